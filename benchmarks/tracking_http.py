"""``tracking.py --http``: logging and search over HTTP, our workspace service against ``mlflow server``.

Both servers run as separate processes on 127.0.0.1 over a SQLite file in a fresh temporary folder:
ours is ``create_app`` under uvicorn, theirs ``mlflow server --backend-store-uri sqlite:///...``.

* Logging: a script in its own process logs N metrics one call at a time. Ours is a real run's
  script: ``Run.get_context()`` with ``AML_STORE_URI=http://...`` and a run token minted through
  ``POST /runs/{id}/tokens``, ``run.log`` per value, then ``run.flush()``. Theirs calls
  ``mlflow.log_metric`` per value against the server. Afterwards every value is counted in each
  store (ours ``get_metrics``, theirs ``get_metric_history``).
* Search (skipped with ``--runs 0``): R runs with a metric ``acc`` on each side (ours
  ``create_run`` + ``log_batch`` per run through ``HttpStore``, theirs ``create_run`` + ``log_metric`` through
  ``MlflowClient``), then a
  filter (``acc > 0.5``) ordered by ``acc`` returning the top 100, and the same filter returning
  every matching run (every page on both sides). Median of ``repeat`` searches.

Run through ``python benchmarks/tracking.py --http``; its last line is ``ratio: <ours/MLflow>x``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

GOAL = 50.0  # issue 9: ours per-call rate at least 50x MLflow's
START_TIMEOUT = 180.0  # mlflow server takes over a minute to start on a busy machine

_SERVE_OURS = """
import sys, uvicorn
from airflow_aml.service.app import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

_SCRIPT_OURS = """
import json, sys, time
from airflow_aml.runtime.run import Run
n = int(sys.argv[1])
run = Run.get_context(allow_offline=False)
start = time.perf_counter()
for i in range(n):
    run.log("loss", 1.0 / (i + 1))
logged = time.perf_counter() - start
run.flush()
print(json.dumps({"calls_s": logged, "durable_s": time.perf_counter() - start}))
"""

_SCRIPT_MLFLOW = """
import json, sys, time
import mlflow
n, run_id = int(sys.argv[1]), sys.argv[2]
mlflow.set_tracking_uri(sys.argv[3])
with mlflow.start_run(run_id=run_id):
    start = time.perf_counter()
    for i in range(n):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    logged = time.perf_counter() - start
print(json.dumps({"calls_s": logged, "durable_s": logged}))  # each call returns once stored
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(argv: list[str], probe: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """A server process, until ``probe`` answers (any status); stopped (by its pid) at exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                httpx.get(probe, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:3]} did not answer {probe} within {START_TIMEOUT:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.killpg(process.pid, 15)  # mlflow server forks gunicorn/uvicorn workers: stop the group
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextmanager
def owner_service(db_uri: str, env: dict[str, str], log: Path) -> Iterator[tuple[str, str]]:
    """Our service on ``db_uri`` as its own process: (its base URL, an Owner's personal token
    minted on its database, what `airflow-aml token create` does), until the block ends."""
    from airflow_aml.service.tokens import mint_personal_token
    from airflow_aml.store.sql.store import SqlStore
    from airflow_aml.store.sql.tokens import SqlTokenStore

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _server([sys.executable, "-c", _SERVE_OURS, db_uri, str(port)], url + "/api/v1/whoami", env, log):
        owner = SqlStore(db_uri)
        pat, _ = mint_personal_token(SqlTokenStore(owner.engine), "alice", name="bench", expires_in=None)
        owner.close()
        yield url, pat


def _script(code: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the logging script failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median_ms(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, found


def _accs(n: int) -> list[float]:
    rng = random.Random(9)
    return [rng.random() for _ in range(n)]


def bench_ours(root: Path, n: int, runs: int, repeat: int, env: dict[str, str]) -> dict[str, float]:
    from airflow_aml.entities import Metric, MetricCondition, RunQuery, RunStatus
    from airflow_aml.service.tokens import mint_personal_token
    from airflow_aml.store.http.store import HttpStore
    from airflow_aml.store.sql.store import SqlStore
    from airflow_aml.store.sql.tokens import SqlTokenStore
    from airflow_aml.workspace import Workspace

    db_uri = f"sqlite:///{root / 'aml.db'}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-c", _SERVE_OURS, db_uri, str(port)]
    with _server(serve, url + "/openapi.json", env, root / "aml-service.log"):
        # The Owner's personal token, minted on the service's database (what `token create` does).
        owner = SqlStore(db_uri)
        pat, _ = mint_personal_token(SqlTokenStore(owner.engine), "alice", name="bench", expires_in=None)
        owner.close()
        ws = Workspace.create("bench", store_uri=f"http://:{pat}@127.0.0.1:{port}")
        store = HttpStore(f"http://:{pat}@127.0.0.1:{port}")  # the Owner's client, for counts and search
        run = ws.experiment("tracking").start_logging()
        minted = httpx.post(f"{url}/api/v1/runs/{run.id}/tokens", json={"secrets": []},
                            headers={"Authorization": f"Bearer {pat}"}, timeout=30)
        minted.raise_for_status()
        script_env = {**env, "AML_STORE_URI": url, "AML_RUN_TOKEN": minted.json()["token"],
                      "AML_RUN_ID": run.id, "AML_WORKSPACE": "bench"}
        script_env.pop("AML_TOKEN", None)
        timing = _script(_SCRIPT_OURS, [str(n)], script_env)
        stored = len(store.get_metrics(run.id, ["loss"]))
        run.complete()
        if not runs:
            return {**timing, "stored": stored}

        exp = "search"
        start = time.perf_counter()
        for acc in _accs(runs):
            record = store.create_run(workspace="bench", experiment=exp, submitted_by="alice",
                                      status=RunStatus.COMPLETED)
            store.log_batch(record.run_id, [Metric("acc", acc, 0, time.time())])
        create_s = time.perf_counter() - start
        condition = (MetricCondition("acc", ">", 0.5),)
        top = RunQuery(experiment=exp, metric_conditions=condition, order_by_metric="acc", max_results=100)
        every = RunQuery(experiment=exp, metric_conditions=condition)
        top_ms, top_found = _median_ms(lambda: len(store.search_runs("bench", top)), repeat)
        all_ms, all_found = _median_ms(lambda: len(store.search_runs("bench", every)), repeat)
    return {**timing, "stored": stored, "create_s": create_s, "top_ms": top_ms, "top_found": top_found,
            "all_ms": all_ms, "all_found": all_found}


def bench_mlflow(root: Path, n: int, runs: int, repeat: int, env: dict[str, str]) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    serve = [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--default-artifact-root", str(root / "mlflow-artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"]
    with _server(serve, url + "/health", env, root / "mlflow-server.log"):
        client = MlflowClient(url)
        experiment_id = client.create_experiment("tracking")
        run_id = client.create_run(experiment_id).info.run_id
        timing = _script(_SCRIPT_MLFLOW, [str(n), run_id, url], env)
        stored = len(client.get_metric_history(run_id, "loss"))
        if not runs:
            return {**timing, "stored": stored}

        search_id = client.create_experiment("search")
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow 3 prints a "View run" line per run
            for acc in _accs(runs):
                created = client.create_run(search_id).info.run_id
                client.log_metric(created, "acc", acc, step=0)
                client.set_terminated(created)
        create_s = time.perf_counter() - start

        def all_pages() -> int:
            found, token = 0, None
            while True:
                page = client.search_runs([search_id], "metrics.acc > 0.5", max_results=1000, page_token=token)
                found += len(page)
                token = page.token
                if not token:
                    return found

        top_ms, top_found = _median_ms(lambda: len(client.search_runs(
            [search_id], "metrics.acc > 0.5", order_by=["metrics.acc DESC"], max_results=100)), repeat)
        all_ms, all_found = _median_ms(all_pages, repeat)
    return {**timing, "stored": stored, "create_s": create_s, "top_ms": top_ms, "top_found": top_found,
            "all_ms": all_ms, "all_found": all_found}


def main_http(root: Path, n: int, runs: int, repeat: int) -> None:
    # A SIGTERM (timeout, Ctrl-C in a pipeline) must still stop both servers: exit through finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {**os.environ, "AML_HOME": str(root / "aml-home"), "MLFLOW_HOME": str(root)}
    for name in ("AML_STORE_URI", "AML_TOKEN", "AML_RUN_TOKEN", "AML_RUN_ID", "AML_WORKSPACE", "AML_PRINCIPAL"):
        env.pop(name, None)
    os.environ["AML_HOME"] = env["AML_HOME"]
    ours = bench_ours(root, n, runs, repeat, env)
    print(f"(ours measured: {n / ours['calls_s']:,.0f} calls/s; now mlflow server)", file=sys.stderr, flush=True)
    theirs = bench_mlflow(root, n, runs, repeat, env)
    ours_rate, their_rate = n / ours["calls_s"], n / theirs["calls_s"]
    print(f"airflow-aml run.log over HTTP (run token), {n:,} calls: {ours_rate:,.0f} calls/s; "
          f"all durable after {ours['durable_s']:.2f} s ({n / ours['durable_s']:,.0f} metrics/s); "
          f"stored {ours['stored']:,}/{n:,}")
    print(f"MLflow log_metric to mlflow server, {n:,} calls: {their_rate:,.0f} calls/s; "
          f"all durable after {theirs['durable_s']:.2f} s; stored {theirs['stored']:,}/{n:,}")
    lost = ours["stored"] != n or theirs["stored"] != n
    if runs:
        _print_search(ours, theirs, runs)
    ratio = ours_rate / their_rate
    verdict = "PASS" if ratio >= GOAL and not lost else "FAIL"
    print(f"{verdict}: per-call rate {ratio:.1f}x MLflow's (goal >= {GOAL:.0f}x), "
          f"{'values lost' if lost else 'nothing lost'}")
    print(f"ratio: {ratio:.1f}x")


def _print_search(ours: dict[str, float], theirs: dict[str, float], runs: int) -> None:
    print(f"[{runs:,} runs] create with 1 metric each: ours {ours['create_s']:.2f} s, "
          f"MLflow {theirs['create_s']:.2f} s, {theirs['create_s'] / ours['create_s']:.1f}x")
    print(f"[{runs:,} runs] acc > 0.5 ordered by acc, top 100 ({ours['top_found']}/{theirs['top_found']}): "
          f"ours {ours['top_ms']:.1f} ms, MLflow {theirs['top_ms']:.1f} ms, {theirs['top_ms'] / ours['top_ms']:.1f}x")
    print(f"[{runs:,} runs] acc > 0.5, every match ({ours['all_found']:,}/{theirs['all_found']:,}): "
          f"ours {ours['all_ms']:.1f} ms, MLflow {theirs['all_ms']:.1f} ms (all pages), "
          f"{theirs['all_ms'] / ours['all_ms']:.1f}x")
