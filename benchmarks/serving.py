"""Model serving throughput: an airflow-aml local deployment against ``mlflow models serve``.

One scikit-learn model (LogisticRegression on iris, pickled, and saved with
``mlflow.sklearn.save_model`` for MLflow) is served three ways on 127.0.0.1, all doing the same
model work per request (parse the JSON, ``predict``):

1. ours: a real local DEPLOYMENT, as a user gets it. A throw-away workspace (store, datastore and
   ``$AML_HOME`` in a temporary folder) registers the model, builds an image with the local
   builder (an Azure-ML-style ``score.py`` calling ``model.predict``), and
   ``Deployment.create(..., config={"replicas": N})`` serves it: the supervisor's load-balancing
   front on the scoring URI before N scoring-server replicas (uvicorn, one worker each). Requests
   go to the scoring URI with the deployment's primary key; key auth, metrics and request
   telemetry are on (the defaults). Its CPU is the supervisor's (front, health checks, telemetry)
   plus the replicas';
2. MLflow: ``mlflow models serve --env-manager local`` (uvicorn, one worker);
3. the floor: a bare FastAPI endpoint (uvicorn, one worker) doing the same predict in a worker
   thread, with no checks.

``--builtin`` builds ours with the built-in no-code sklearn scorer instead, which also returns
``predict_proba`` (the floor then does too; MLflow still only predicts, so that ratio is not
like for like); ``--onnx`` with the built-in onnx scorer on the same model converted at build
time (``convert_to_onnx``). ``--direct`` adds a fourth server: the deployment's own image served by the
scoring server alone (``python -m airflow_aml.runtime.scoring``, no front), which shows what the
front costs. ``--no-telemetry`` deploys with request telemetry off.

Only one server is under load at a time (the others sit idle), so they never share the CPU with
each other, only with the load generator: ``--concurrency`` threads, each with its own keep-alive
httpx client, sending single-row requests. Each server answers ``--requests`` of them (after
``--warmup`` untimed ones) in ``--rounds`` rounds that take turns between the servers, so that a
change in the machine's other load hits all alike; ``--max-seconds`` bounds the time. Every
answer must be 200 with the model's prediction. Besides throughput and latency, the server
processes' own CPU time per request is printed (from /proc): on a shared machine it moves much
less than throughput does. The deployment is deleted at the end, whatever happened.

    python benchmarks/serving.py [--requests 2000] [--concurrency 4] [--replicas 1] [--builtin | --onnx] [--direct]

The last line is ``ratio: <ours/MLflow throughput>x``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEPLOYMENT = "iris-bench"
DEPLOY_TIMEOUT = 300.0
BUILD_TIMEOUT = 900.0
FLOOR_APP = '''
import json
import os
import pickle

import numpy as np
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

with open(os.environ["FLOOR_MODEL"], "rb") as handle:
    model = pickle.load(handle)
PROBABILITIES = os.environ.get("FLOOR_PROBABILITIES") == "1"
app = FastAPI()


@app.get("/health")
async def health():
    return {"status": "alive"}


@app.post("/score")
async def score(request: Request) -> Response:
    body = await request.body()

    def predict() -> bytes:
        rows = np.asarray(json.loads(body)["data"])
        result = {"predictions": model.predict(rows).tolist()}
        if PROBABILITIES:
            result["probabilities"] = model.predict_proba(rows).tolist()
        return json.dumps(result, separators=(",", ":")).encode()

    return Response(await run_in_threadpool(predict), media_type="application/json")
'''

SCORE_PY = '''
import json
import pickle

import numpy as np

from airflow_aml.runtime.model import get_model_path


def init():
    global model
    with open(get_model_path("iris"), "rb") as handle:
        model = pickle.load(handle)


def run(raw_data):
    return {"predictions": model.predict(np.asarray(json.loads(raw_data)["data"])).tolist()}
'''



@dataclass
class Result:
    name: str
    completed: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per part of the server

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values()) if self.cpu else float("nan")

    def cpu_ms(self, part: str | None = None) -> float:
        seconds = self.cpu_seconds if part is None else self.cpu.get(part, float("nan"))
        return seconds / self.completed * 1000 if self.completed else float("nan")

    def merge(self, other: Result) -> Result:
        cpu = {part: self.cpu.get(part, 0.0) + other.cpu.get(part, 0.0) for part in {*self.cpu, *other.cpu}}
        return Result(self.name, self.completed + other.completed, self.errors + other.errors,
                      self.seconds + other.seconds, self.latencies + other.latencies, cpu)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


@dataclass
class Target:
    """A server this script starts as a process of its own."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    score_path: str
    make_body: Callable[[list[float]], dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    """A server under load: where requests go, and the process groups whose CPU time it uses."""

    name: str
    url: str
    make_body: Callable[[list[float]], dict[str, Any]]
    headers: dict[str, str]
    groups: Callable[[], dict[str, set[int]]]  # part of the server ("front", "replicas" ...) -> pgids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _cpu_seconds(groups: dict[str, set[int]]) -> dict[str, float]:
    """CPU time (user + system) used so far by the processes of each part's process groups, from /proc.

    Throughput on a shared machine moves with whatever else runs; the server's own CPU time per
    request does not, so it is printed beside it.
    """
    part_of = {pgid: part for part, pgids in groups.items() for pgid in pgids}
    totals = dict.fromkeys(groups, 0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        part = part_of.get(int(fields[2]))  # fields after the name: state ppid pgrp ... utime(11) stime(12)
        if part is not None:
            totals[part] += int(fields[11]) + int(fields[12])
    return {part: ticks / os.sysconf("SC_CLK_TCK") for part, ticks in totals.items()}


@contextmanager
def _server(target: Target, log: Path, timeout: float = 180) -> Iterator[Endpoint]:
    """Start the server in a process group of its own; stop the whole group at the end, even on error."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            target.command, env=target.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://{HOST}:{target.port}{target.ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.name} not ready within {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        # The process group's id is the server's pid: it was started in a session of its own.
        yield Endpoint(target.name, f"http://{HOST}:{target.port}{target.score_path}", target.make_body,
                       target.headers, lambda: {"server": {process.pid}})
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # The group is ours: the server and, for MLflow, the uvicorn its CLI starts.
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _load(endpoint: Endpoint, rows: list[list[float]], expected: list[int], count: int, concurrency: int,
          max_seconds: float) -> Result:
    """``count`` requests from ``concurrency`` threads, each on its own keep-alive connection."""
    tickets = itertools.count()  # next() on a count is atomic under the GIL: each request taken once
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(headers=endpoint.headers, timeout=30) as client:
            while (i := next(tickets)) < count and time.monotonic() < deadline:
                row = i % len(rows)
                started = time.perf_counter()
                try:
                    response = client.post(endpoint.url, json=endpoint.make_body(rows[row]))
                    ok = response.status_code == 200 and response.json()["predictions"] == [expected[row]]
                    problem = None if ok else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = repr(exc)
                elapsed = time.perf_counter() - started
                if problem is None:
                    mine.append(elapsed)
                else:
                    with lock:
                        errors.append(problem)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        print(f"  {endpoint.name}: {len(errors)} failed requests, first: {errors[0]}", file=sys.stderr)
    return Result(endpoint.name, len(latencies), len(errors), seconds, latencies)


def _data_body(row: list[float]) -> dict[str, Any]:
    return {"data": [row]}


def _inputs_body(row: list[float]) -> dict[str, Any]:
    return {"inputs": [row]}  # MLflow's format for a model without a signature


# ------------------------------------------------------------------------------------------ ours
def _workspace_image(root: Path, model: Any, builtin: bool, onnx: bool = False) -> tuple[Any, Any]:
    """A throw-away workspace under ``root`` with the model registered and its image built (local builder)."""
    import numpy
    import sklearn

    from airflow_aml.images import ImageSpec
    from airflow_aml.workspace import Workspace

    os.environ["AML_HOME"] = str(root / "aml-home")  # deployments, image environments: all in the temp folder
    os.environ["AML_PROGRESS"] = "0"
    for name in ("AML_STORE_URI", "AML_WORKSPACE"):
        os.environ.pop(name, None)
    ws = Workspace.create("bench", store_uri=f"sqlite:///{root / 'aml.db'}", datastore_root=root / "datastore")
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes(pickle.dumps(model))
    ws.register_model("iris", path=model_dir)
    if onnx:  # the same model, converted at build time and run by onnxruntime
        spec: Any = ImageSpec(models=["iris"], builtin_scorer="onnx", convert_to_onnx=True)
    elif builtin:
        spec = ImageSpec(models=["iris"], builtin_scorer="sklearn")
    else:
        source = root / "score"
        source.mkdir()
        (source / "score.py").write_text(textwrap.dedent(SCORE_PY))
        spec = ImageSpec(models=["iris"], source_directory=str(source), entry_script="score.py",
                         pip=[f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}"])
    started = time.monotonic()
    image = ws.create_image("iris-bench", spec, wait=False).wait_for_completion(timeout=BUILD_TIMEOUT)
    print(f"image {image.id} built in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return ws, image


@contextmanager
def _deployment(ws: Any, image: Any, replicas: int, telemetry: bool) -> Iterator[Any]:
    """``Deployment.create`` on the local target; deleted at the end, even on error."""
    from airflow_aml.deployments import Deployment

    started = time.monotonic()
    try:
        deployment = Deployment.create(ws, DEPLOYMENT, image, config={"replicas": replicas, "telemetry": telemetry},
                                       timeout=DEPLOY_TIMEOUT)
        print(f"deployment {DEPLOYMENT!r} Healthy with {replicas} replica(s) in {time.monotonic() - started:.1f} s "
              f"at {deployment.scoring_uri}", file=sys.stderr, flush=True)
        yield deployment
    finally:
        Deployment.delete_if_exists(ws, DEPLOYMENT, timeout=120)


def _deployment_endpoint(deployment: Any) -> Endpoint:
    def groups() -> dict[str, set[int]]:
        # The supervisor and each replica run in sessions of their own: their pids are their groups.
        runtime = deployment.refresh().record.runtime
        return {
            "front": {int(runtime["supervisor"]["pid"])},
            "replicas": {int(r["pid"]) for r in runtime.get("replicas") or [] if r.get("pid")},
        }

    return Endpoint("ours", str(deployment.scoring_uri), _data_body,
                    {"Authorization": f"Bearer {deployment.get_keys()[0]}"}, groups)


def _direct_target(root: Path, image: Any, key: str) -> Target:
    """The deployment's image served by the scoring server alone, as a replica runs it, without the front."""
    from airflow_aml.runtime.scoring import hash_key

    config = root / "direct-scoring.json"
    config.write_text(json.dumps({"primary_key_hash": hash_key(key)}))
    port = _free_port()
    command = [image.properties["local.python"], "-m", "airflow_aml.runtime.scoring", "--bundle", str(image.location),
               "--host", HOST, "--port", str(port), "--config", str(config), "--workers", "1",
               "--log-level", "warning"]
    return Target("ours direct", command, dict(os.environ), port=port, ready_path="/ready", score_path="/score",
                  make_body=_data_body, headers={"Authorization": f"Bearer {key}"})


# ------------------------------------------------------------------------------------------ the others
def _other_targets(root: Path, model: Any, builtin: bool) -> list[Target]:
    import mlflow.sklearn

    model_path = root / "floor-model.pkl"
    model_path.write_bytes(pickle.dumps(model))
    mlflow_model = root / "mlflow-model"
    mlflow.sklearn.save_model(model, str(mlflow_model))
    (root / "floor_app.py").write_text(textwrap.dedent(FLOOR_APP))

    python = sys.executable
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "FLOOR_MODEL": str(model_path),
        # mlflow runs a bare `uvicorn`: the one of this interpreter's environment.
        "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]),
        "FLOOR_PROBABILITIES": "1" if builtin else "0",
    }
    mlflow_cli = str(Path(python).with_name("mlflow"))
    mlflow_, floor = _free_port(), _free_port()
    return [
        Target(
            "mlflow", [mlflow_cli, "models", "serve", "-m", str(mlflow_model), "--env-manager", "local",
                       "-h", HOST, "-p", str(mlflow_)],
            env, port=mlflow_, ready_path="/ping", score_path="/invocations", make_body=_inputs_body,
        ),
        Target(
            "fastapi floor", [python, "-m", "uvicorn", "floor_app:app", "--app-dir", str(root), "--host", HOST,
                              "--port", str(floor), "--workers", "1", "--no-access-log", "--log-level", "warning"],
            env, port=floor, ready_path="/health", score_path="/score", make_body=_data_body,
        ),
    ]


# ------------------------------------------------------------------------------------------ report
def _report(results: dict[str, Result], args: argparse.Namespace) -> None:
    label = {"ours": f"ours ({args.replicas} rep.)"}
    print(f"{'server':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}   requests")
    for result in results.values():
        print(f"{label.get(result.name, result.name):18} {result.rate:8.1f} {result.percentile(0.5):8.2f} "
              f"{result.percentile(0.99):8.2f} {result.cpu_ms():11.2f}   "
              f"{result.completed} ok, {result.errors} failed in {result.seconds:.1f} s", flush=True)
    ours = results["ours"]
    print(f"ours' CPU per request: front (supervisor) {ours.cpu_ms('front'):.2f} ms + replicas "
          f"{ours.cpu_ms('replicas'):.2f} ms")

    def compare(other: Result, title: str) -> None:
        print(f"ours/{title}: throughput {ours.rate / other.rate:.2f}x, p50 latency "
              f"{ours.percentile(0.5) / other.percentile(0.5):.2f}x, p99 latency "
              f"{ours.percentile(0.99) / other.percentile(0.99):.2f}x, CPU per request "
              f"{ours.cpu_ms() / other.cpu_ms():.2f}x")

    compare(results["mlflow"], "MLflow")
    compare(results["fastapi floor"], "floor")
    if "ours direct" in results:
        compare(results["ours direct"], "direct (what the front costs)")
    scorer = "built-in onnx scorer" if args.onnx else "built-in scorer" if args.builtin else "score.py"
    print(f"{args.requests} single-row requests each, {args.concurrency} concurrent, in {args.rounds} "
          f"interleaved rounds after {args.warmup} warm-up; ours: local deployment, {args.replicas} replica(s), "
          f"{scorer}, telemetry {'off' if args.no_telemetry else 'on'}")
    print(f"ratio: {ours.rate / results['mlflow'].rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=1, help="replicas of our deployment")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="the requests are sent in this many interleaved rounds")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per server, for the timed requests")
    parser.add_argument("--builtin", action="store_true", help="ours with the built-in sklearn scorer (+probabilities)")
    parser.add_argument("--onnx", action="store_true",
                        help="ours with the built-in onnx scorer (the model converted with convert_to_onnx)")
    parser.add_argument("--direct", action="store_true", help="also serve our image without the deployment's front")
    parser.add_argument("--no-telemetry", action="store_true", help="deploy with request telemetry off")
    args = parser.parse_args()
    args.builtin = args.builtin or args.onnx  # the peers then return probabilities too
    if args.replicas < 1 or args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--replicas, --requests, --concurrency and --rounds must be at least 1")

    import warnings

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore")  # MLflow's notices about signatures and pip requirements
    features, target = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, target)
    rows = features.tolist()
    expected = model.predict(features).tolist()

    results: dict[str, Result] = {}
    # Left in reverse order: the servers stop, the deployment is deleted, then the folder goes.
    with tempfile.TemporaryDirectory(prefix="aml-serving-bench-") as tmp, ExitStack() as servers:
        root = Path(tmp)
        ws, image = _workspace_image(root, model, args.builtin, args.onnx)
        deployment = servers.enter_context(_deployment(ws, image, args.replicas, not args.no_telemetry))
        endpoints = [_deployment_endpoint(deployment)]
        targets = _other_targets(root, model, args.builtin)
        if args.direct:
            targets.insert(0, _direct_target(root, image, deployment.get_keys()[0]))
        for target_ in targets:  # started one after the other; idle servers use no CPU
            endpoints.append(servers.enter_context(_server(target_, root / f"{target_.name.replace(' ', '-')}.log")))
        for endpoint in endpoints:
            _load(endpoint, rows, expected, args.warmup, args.concurrency, args.max_seconds)
        # Interleaved rounds: a change in the machine's load during the run hits all servers alike.
        for round_ in range(args.rounds):
            share = args.requests // args.rounds + (1 if round_ < args.requests % args.rounds else 0)
            for endpoint in endpoints:
                groups = endpoint.groups()
                cpu_before = _cpu_seconds(groups)
                part = _load(endpoint, rows, expected, share, args.concurrency, args.max_seconds / args.rounds)
                cpu_after = _cpu_seconds(groups)
                part.cpu = {name: cpu_after[name] - cpu_before[name] for name in groups}
                results[endpoint.name] = results[endpoint.name].merge(part) if endpoint.name in results else part
        if any(r.errors for r in results.values()):
            _report(results, args)
            raise SystemExit("some requests failed: the numbers above are not comparable")
    _report(results, args)


if __name__ == "__main__":
    main()
