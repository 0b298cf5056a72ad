"""Model registration: airflow-aml against MLflow, same work, same machine, one process.

N versions of one model name, each from the same small pickled scikit-learn model, on SQLite
files in a fresh temporary folder:

* ours, ``ws.register_model(name, path=model.pkl)``: the file copied into the datastore and its
  SHA-256 recorded, the version row written;
* ours, ``ws.register_model(name, run_id=..., run_path="outputs/model.pkl")``: from a run's files
  (what registering a trained model is), the files copied within the datastore;
* MLflow, ``mlflow.register_model("runs:/<id>/model", name)``: the call users make (it looks the
  run up and creates the registered model on first use, then a version);
* MLflow, ``MlflowClient.create_model_version(name, source, run_id)``: the bare row, no copy.

Per call: total, p50 and p99. The last line is ``ratio: <x>x``: MLflow's ``register_model`` p50
over ours (from a path) p50.

    python benchmarks/registry.py [--n 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def _figures(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"total_s": sum(times), "p50_ms": statistics.median(times) * 1000,
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1000}


def _interleaved(n: int, calls: dict[str, Callable[[int], object]], rounds: int = 10) -> dict[str, dict[str, float]]:
    """Time ``n`` calls of each, in ``rounds`` blocks taken in turn: on a shared machine every
    contender then meets the same changes of load."""
    times: dict[str, list[float]] = {label: [] for label in calls}
    done = 0
    for r in range(rounds):
        block = n * (r + 1) // rounds - done
        for label, call in calls.items():
            for i in range(done, done + block):
                start = time.perf_counter()
                call(i)
                times[label].append(time.perf_counter() - start)
        done += block
    return {label: _figures(values) for label, values in times.items()}


def _model_file(folder: Path) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=300).fit(x, y)))
    return path


def ours_calls(root: Path, model: Path) -> dict[str, Callable[[int], object]]:
    os.environ["AML_HOME"] = str(root / "aml-home")
    from airflow_aml.workspace import Workspace

    ws = Workspace.create("bench", store_uri=f"sqlite:///{root / 'aml.db'}", datastore_root=root / "ds")
    run = ws.experiment("train").start_logging()
    run.upload_file("outputs/model.pkl", model)
    run.complete()
    return {
        "ours: register_model(path=)": lambda i: ws.register_model("bench-path", path=model),
        "ours: register_model(run_id=)": lambda i: ws.register_model(
            "bench-run", run_id=run.id, run_path="outputs/model.pkl"
        ),
    }


def mlflow_calls(root: Path, model: Path) -> dict[str, Callable[[int], object]]:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(root / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment) as active:
        logged = mlflow.sklearn.log_model(pickle.loads(model.read_bytes()), name="model")
    run_id = active.info.run_id
    client = MlflowClient()
    client.create_registered_model("bench-bare")
    return {
        "MLflow: mlflow.register_model": lambda i: mlflow.register_model(f"runs:/{run_id}/model", "bench-register"),
        "MLflow: create_model_version": lambda i: client.create_model_version(
            "bench-bare", logged.model_uri, run_id=run_id
        ),
    }


def _check_counts(root: Path, n: int) -> None:
    from mlflow import MlflowClient

    from airflow_aml.workspace import Workspace

    ws = Workspace.get("bench", store_uri=f"sqlite:///{root / 'ours' / 'aml.db'}")
    assert ws.get_model("bench-path").version == n and ws.get_model("bench-run").version == n
    assert len(MlflowClient().search_model_versions("name='bench-register'", max_results=n + 10)) == n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("AML_PROGRESS", "0")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no calls home from the benchmark
    with tempfile.TemporaryDirectory(prefix="aml-bench-registry-") as tmp:
        root = Path(tmp)
        model = _model_file(root)
        size = model.stat().st_size
        load_before = os.getloadavg()[0]
        results = _interleaved(args.n, {**ours_calls(root / "ours", model), **mlflow_calls(root / "mlflow", model)})
        load_after = os.getloadavg()[0]
        _check_counts(root, args.n)
    print(f"{args.n} versions of one name, a {size:,}-byte pickled model, SQLite files; the four interleaved "
          f"in 10 rounds; load average {load_before:.2f} -> {load_after:.2f}")
    for label, figures in results.items():
        print(f"  {label:<34} total {figures['total_s']:6.2f} s   p50 {figures['p50_ms']:6.2f} ms   "
              f"p99 {figures['p99_ms']:6.2f} ms")
    ours = results["ours: register_model(path=)"]["p50_ms"]
    print(f"ours (path) vs create_model_version, p50: "
          f"{results['MLflow: create_model_version']['p50_ms'] / ours:.2f}x")
    print(f"ratio: {results['MLflow: mlflow.register_model']['p50_ms'] / ours:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
