"""Metric logging throughput: airflow-aml's ``run.log`` against MLflow's ``log_metric``.

Both log the same N metrics (one call per value, as a training loop does) into a SQLite backend
in a fresh temporary folder, on this machine, in this one process. MLflow is also measured with
``log_batch`` (its fastest path) for reference. Every value is read back afterwards to prove that
nothing was lost.

    python benchmarks/tracking.py [--n 10000]
    python benchmarks/tracking.py --http [--n 10000] [--runs 2000]   # over HTTP: tracking_http.py
    python benchmarks/tracking.py --mlflow-client [--n 10000]        # MLflow's client: tracking_mlflow_client.py

The last line is ``ratio: <ours/MLflow per-call>x``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def bench_ours(root: Path, n: int) -> float:
    os.environ["AML_HOME"] = str(root / "aml-home")
    from airflow_aml.workspace import Workspace

    ws = Workspace.create("bench", store_uri=f"sqlite:///{root / 'aml.db'}", datastore_root=root / "ds")
    run = ws.experiment("tracking").start_logging()
    start = time.perf_counter()
    for i in range(n):
        run.log("loss", 1.0 / (i + 1))
    run.flush()  # included: the rate counts values that are durably in the store
    elapsed = time.perf_counter() - start
    stored = ws.store.get_metrics(run.id, ["loss"])
    assert len(stored) == n, f"airflow-aml lost metrics: {len(stored)} of {n} stored"
    run.complete()
    return n / elapsed


def bench_mlflow(root: Path, n: int, *, batch: bool) -> float:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / ('mlflow-batch.db' if batch else 'mlflow.db')}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"tracking-{'batch' if batch else 'call'}")
    run_id = client.create_run(experiment_id).info.run_id
    start = time.perf_counter()
    if batch:
        now = int(time.time() * 1000)
        metrics = [Metric("loss", 1.0 / (i + 1), now, i) for i in range(n)]
        for offset in range(0, n, 1000):  # MLflow caps a batch at 1000 metrics
            client.log_batch(run_id, metrics=metrics[offset : offset + 1000])
    else:
        for i in range(n):
            client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
    elapsed = time.perf_counter() - start
    stored = client.get_metric_history(run_id, "loss")
    assert len(stored) == n, f"MLflow lost metrics: {len(stored)} of {n} stored"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="metrics logged by each contender")
    parser.add_argument("--http", action="store_true",
                        help="our service vs mlflow server, each a separate process (tracking_http.py)")
    parser.add_argument("--mlflow-client", action="store_true",
                        help="the MLflow client against our service's MLflow API vs mlflow server "
                             "(tracking_mlflow_client.py)")
    parser.add_argument("--runs", type=int, default=2_000, help="--http: runs per side for the search")
    parser.add_argument("--repeat", type=int, default=5, help="--http: searches per measurement (median)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if args.mlflow_client:
        sys.path.insert(0, str(Path(__file__).parent))
        from tracking_mlflow_client import main_mlflow_client

        with tempfile.TemporaryDirectory(prefix="aml-bench-") as tmp:
            main_mlflow_client(Path(tmp), args.n)
        return
    if args.http:
        sys.path.insert(0, str(Path(__file__).parent))
        from tracking_http import main_http

        with tempfile.TemporaryDirectory(prefix="aml-bench-") as tmp:
            main_http(Path(tmp), args.n, args.runs, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="aml-bench-") as tmp:
        root = Path(tmp)
        ours = bench_ours(root, args.n)
        print(f"airflow-aml run.log (buffered), {args.n} calls: {ours:,.0f} metrics/s")
        batch = bench_mlflow(root, args.n, batch=True)
        print(f"MLflow log_batch (1000 per call), {args.n} metrics: {batch:,.0f} metrics/s")
        per_call = bench_mlflow(root, args.n, batch=False)
        print(f"MLflow log_metric, {args.n} calls: {per_call:,.0f} metrics/s")
    print(f"ours vs MLflow log_batch: {ours / batch:.1f}x")
    print(f"ratio: {ours / per_call:.1f}x")


if __name__ == "__main__":
    main()
