"""Model serving throughput: airflow-aml's scoring server against ``mlflow models serve``.

One scikit-learn model (LogisticRegression on iris, saved with pickle, and with
``mlflow.sklearn.save_model`` for MLflow) is served three ways, each by uvicorn with one worker
process, on 127.0.0.1, all doing the same model work per request (parse the JSON, ``predict``):

1. ours: ``python -m airflow_aml.runtime.scoring`` on an image bundle whose Azure-ML-style
   ``score.py`` calls ``model.predict``; key auth on, metrics on, telemetry off (the defaults);
2. MLflow: ``mlflow models serve --env-manager local``;
3. the floor: a bare FastAPI endpoint doing the same predict in a worker thread, with no checks.

``--builtin`` serves ours with the built-in no-code sklearn scorer instead, which also returns
``predict_proba`` (the floor then does too; MLflow still only predicts, so that ratio is not
like for like).

Only one server is under load at a time (the others sit idle), so they never share the CPU with
each other, only with the load generator: ``--concurrency`` threads, each with its own keep-alive
httpx client, sending single-row requests. Each server answers ``--requests`` of them (after
``--warmup`` untimed ones) in ``--rounds`` rounds that take turns between the servers, so that a
change in the machine's other load hits all three alike; ``--max-seconds`` bounds the time. Every
answer must be 200 with the model's prediction. Besides throughput and latency, the server
processes' own CPU time per request is printed (from /proc): on a shared machine it moves much
less than throughput does.

    python benchmarks/serving.py [--requests 2000] [--concurrency 4] [--builtin]

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
    cpu_seconds: float = float("nan")

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.completed * 1000 if self.completed else float("nan")

    def merge(self, other: Result) -> Result:
        return Result(self.name, self.completed + other.completed, self.errors + other.errors,
                      self.seconds + other.seconds, self.latencies + other.latencies,
                      self.cpu_seconds + other.cpu_seconds)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


@dataclass
class Target:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    score_path: str
    make_body: Callable[[list[float]], dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the processes of a process group, from /proc.

    Throughput on a shared machine moves with whatever else runs; the server's own CPU time per
    request does not, so it is printed beside it.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def _server(target: Target, log: Path, timeout: float = 180) -> Iterator[int]:
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
        yield process.pid  # the process group's id: the server was started in a session of its own
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


def _load(target: Target, rows: list[list[float]], expected: list[int], count: int, concurrency: int,
          max_seconds: float) -> Result:
    """``count`` requests from ``concurrency`` threads, each on its own keep-alive connection."""
    url = f"http://{HOST}:{target.port}{target.score_path}"
    tickets = itertools.count()  # next() on a count is atomic under the GIL: each request taken once
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(headers=target.headers, timeout=30) as client:
            while (i := next(tickets)) < count and time.monotonic() < deadline:
                row = i % len(rows)
                started = time.perf_counter()
                try:
                    response = client.post(url, json=target.make_body(rows[row]))
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
        print(f"  {target.name}: {len(errors)} failed requests, first: {errors[0]}", file=sys.stderr)
    return Result(target.name, len(latencies), len(errors), seconds, latencies)


def _data_body(row: list[float]) -> dict[str, Any]:
    return {"data": [row]}


def _inputs_body(row: list[float]) -> dict[str, Any]:
    return {"inputs": [row]}  # MLflow's format for a model without a signature


def _targets(root: Path, model: Any, key: str, builtin: bool) -> list[Target]:
    import mlflow.sklearn

    from airflow_aml.runtime.scoring import hash_key

    bundle = root / "bundle"
    (bundle / "models/iris/1").mkdir(parents=True)
    (bundle / "app").mkdir()
    (bundle / "models/iris/1/model.pkl").write_bytes(pickle.dumps(model))
    (bundle / "app/score.py").write_text(SCORE_PY)
    (bundle / "image.json").write_text(json.dumps({
        "name": "iris", "version": 1, "entry_script": None if builtin else "score.py",
        "builtin_scorer": "sklearn" if builtin else None,
        "models": [{"name": "iris", "version": 1, "path": "models/iris/1"}], "input_schema": None,
        "output_schema": None,
    }))
    config = root / "config.json"
    config.write_text(json.dumps({"primary_key_hash": hash_key(key)}))
    mlflow_model = root / "mlflow-model"
    mlflow.sklearn.save_model(model, str(mlflow_model))
    (root / "floor_app.py").write_text(textwrap.dedent(FLOOR_APP))

    python = sys.executable
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "FLOOR_MODEL": str(bundle / "models/iris/1/model.pkl"),
        # mlflow runs a bare `uvicorn`: the one of this interpreter's environment.
        "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]),
        "FLOOR_PROBABILITIES": "1" if builtin else "0",
    }
    mlflow_cli = str(Path(python).with_name("mlflow"))
    ours, mlflow_, floor = _free_port(), _free_port(), _free_port()
    return [
        Target(
            "ours", [python, "-m", "airflow_aml.runtime.scoring", "--bundle", str(bundle), "--host", HOST,
                     "--port", str(ours), "--config", str(config), "--workers", "1", "--log-level", "warning"],
            env, port=ours, ready_path="/ready", score_path="/score", make_body=_data_body,
            headers={"Authorization": f"Bearer {key}"},
        ),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="the requests are sent in this many interleaved rounds")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per server, for the timed requests")
    parser.add_argument("--builtin", action="store_true", help="ours with the built-in sklearn scorer (+probabilities)")
    args = parser.parse_args()

    import warnings

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore")  # MLflow's notices about signatures and pip requirements
    features, target = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, target)
    rows = features.tolist()
    expected = model.predict(features).tolist()

    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="aml-serving-bench-") as tmp, ExitStack() as servers:
        root = Path(tmp)
        from airflow_aml.runtime.scoring import generate_key

        targets = _targets(root, model, generate_key(), args.builtin)
        groups: dict[str, int] = {}
        for target_ in targets:  # started one after the other; idle servers use no CPU
            log = root / f"{target_.name.replace(' ', '-')}.log"
            groups[target_.name] = servers.enter_context(_server(target_, log))
            _load(target_, rows, expected, args.warmup, args.concurrency, args.max_seconds)
        # Interleaved rounds: a change in the machine's load during the run hits all servers alike.
        for round_ in range(args.rounds):
            share = args.requests // args.rounds + (1 if round_ < args.requests % args.rounds else 0)
            for target_ in targets:
                cpu_before = _group_cpu_seconds(groups[target_.name])
                part = _load(target_, rows, expected, share, args.concurrency, args.max_seconds / args.rounds)
                part.cpu_seconds = _group_cpu_seconds(groups[target_.name]) - cpu_before
                results[target_.name] = results[target_.name].merge(part) if target_.name in results else part
    for result in results.values():
        print(f"{result.name:14} {result.rate:8.1f} req/s   p50 {result.percentile(0.5):6.2f} ms   "
              f"p99 {result.percentile(0.99):7.2f} ms   server CPU {result.cpu_ms:5.2f} ms/request   "
              f"{result.completed} ok, {result.errors} failed in {result.seconds:.1f} s", flush=True)

    ours, mlflow_, floor = results["ours"], results["mlflow"], results["fastapi floor"]
    if ours.errors or mlflow_.errors or floor.errors:
        raise SystemExit("some requests failed: the numbers above are not comparable")
    print(f"throughput ours/floor: {ours.rate / floor.rate:.2f} (floor/ours {floor.rate / ours.rate:.2f}x); "
          f"server CPU per request MLflow/ours: {mlflow_.cpu_ms / ours.cpu_ms:.2f}x, ours/floor: "
          f"{ours.cpu_ms / floor.cpu_ms:.2f}x")
    print(f"{args.requests} single-row requests each, {args.concurrency} concurrent, in {args.rounds} "
          f"interleaved rounds after {args.warmup} warm-up, "
          f"{'built-in scorer' if args.builtin else 'score.py'}")
    print(f"ratio: {ours.rate / mlflow_.rate:.2f}x")


if __name__ == "__main__":
    main()
