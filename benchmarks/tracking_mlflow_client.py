"""``tracking.py --mlflow-client``: the same MLflow-client script, logging N metrics one
``mlflow.log_metric`` call at a time, against ``mlflow server`` (SQLite) and against our
workspace service's MLflow API (SQLite), each server a separate process on 127.0.0.1.

MLflow's client is synchronous per call, so this measures what one call costs each server. The
script is ``tracking_http._SCRIPT_MLFLOW`` for both; ours gets ``MLFLOW_TRACKING_TOKEN`` (the
Owner's personal token) and the tracking URI ``http://127.0.0.1:<port>/api/v1/workspaces/bench/mlflow``.
Afterwards every value is counted on each side (``get_metric_history``, and on ours also
through our SDK). The last line is ``ratio: <ours/MLflow calls per second>x``; the goal is >= 1.0.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tracking_http import _SCRIPT_MLFLOW, _script, bench_mlflow, owner_service

GOAL = 1.0  # issue 10: our service must not be slower than mlflow server for MLflow's own client


def bench_ours(root: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    from airflow_aml.workspace import Workspace

    with owner_service(f"sqlite:///{root / 'aml.db'}", env, root / "aml-service.log") as (url, pat):
        ws = Workspace.create("bench", store_uri=url.replace("http://", f"http://:{pat}@"))
        tracking_uri = f"{url}/api/v1/workspaces/bench/mlflow"
        os.environ["MLFLOW_TRACKING_TOKEN"] = pat
        try:
            client = MlflowClient(tracking_uri)
            run_id = client.create_run(client.create_experiment("tracking")).info.run_id
            timing = _script(_SCRIPT_MLFLOW, [str(n), run_id, tracking_uri], {**env, "MLFLOW_TRACKING_TOKEN": pat})
            stored = len(client.get_metric_history(run_id, "loss"))
            ours_sdk = len(ws.get_run(run_id).get_metrics()["loss"])
        finally:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    return {**timing, "stored": min(stored, ours_sdk)}


def main_mlflow_client(root: Path, n: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {**os.environ, "AML_HOME": str(root / "aml-home"), "MLFLOW_HOME": str(root)}
    for name in ("AML_STORE_URI", "AML_TOKEN", "AML_RUN_TOKEN", "AML_RUN_ID", "AML_WORKSPACE", "AML_PRINCIPAL",
                 "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"):
        env.pop(name, None)
    os.environ["AML_HOME"] = env["AML_HOME"]
    ours = bench_ours(root, n, env)
    print(f"(ours measured: {n / ours['calls_s']:,.0f} calls/s; now mlflow server)", file=sys.stderr, flush=True)
    theirs = bench_mlflow(root, n, 0, 1, env)
    ours_rate, their_rate = n / ours["calls_s"], n / theirs["calls_s"]
    print(f"MLflow client log_metric to our service, {n:,} calls: {ours_rate:,.0f} calls/s; "
          f"stored {ours['stored']:,}/{n:,}")
    print(f"MLflow client log_metric to mlflow server, {n:,} calls: {their_rate:,.0f} calls/s; "
          f"stored {theirs['stored']:,}/{n:,}")
    lost = ours["stored"] != n or theirs["stored"] != n
    ratio = ours_rate / their_rate
    verdict = "PASS" if ratio >= GOAL and not lost else "FAIL"
    outcome = 'values lost' if lost else 'nothing lost'
    print(f"{verdict}: {ratio:.2f}x mlflow server's rate (goal >= {GOAL:.1f}x), {outcome}")
    print(f"ratio: {ratio:.2f}x")
