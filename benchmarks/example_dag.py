"""The example DAG end to end against the same lifecycle done with MLflow alone, same machine, one run.

Ours: ``airflow dags test aml_train_register_deploy`` on the embedded default (a fresh Airflow
home and workspace in a temporary folder, ``airflow db migrate`` done first and not timed): a
sweep of 4 child runs on the local compute target, the best run picked and gated, its model
registered, a scoring image built (local builder), deployed as a local web service, waited
Healthy and scored. Round 1 creates the service (and builds the image's environment once);
round 2 is a retraining: next model version, next image, the running service rolled over to it.

The peer: one Python script with MLflow doing the same work (``dags_examples/iris/train.py``'s
pipeline and grid): 4 nested runs logging the same params and metrics and ``log_model``, the best
picked with ``search_runs``, ``mlflow.register_model``, then ``mlflow models serve
--env-manager local`` of the new version until ``/invocations`` answers 200 (round 2 stops the
old server first: MLflow has no rolling update). Its tracking store is a SQLite file.

    python benchmarks/example_dag.py [--rounds 2]

Prints each round's seconds; the last line is ``ratio: <x>x``: MLflow's time over ours for the
last round (the retraining a scheduled DAG repeats; above 1: ours is done sooner).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
GRID = [0.01, 0.1, 1.0, 10.0]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
TIMEOUT = 900.0

MLFLOW_PIPELINE = r'''
import sys, mlflow, mlflow.sklearn
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("iris-train")
data = load_iris()
x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.3, random_state=42,
                                                    stratify=data.target)
with mlflow.start_run(run_name="sweep") as parent:
    for c in [float(v) for v in sys.argv[2].split(",")]:
        with mlflow.start_run(nested=True):
            mlflow.log_params({"C": c, "max_iter": 200, "model": "LogisticRegression"})
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=200))
            mlflow.log_metric("cv_accuracy", float(cross_val_score(model, x_train, y_train, cv=5).mean()))
            model.fit(x_train, y_train)
            mlflow.log_metric("accuracy", float(accuracy_score(y_test, model.predict(x_test))))
            mlflow.sklearn.log_model(model, name="model")
best = MlflowClient().search_runs(
    [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    order_by=["metrics.cv_accuracy DESC"], max_results=1)[0]
assert best.data.metrics["cv_accuracy"] >= 0.9, best.data.metrics
version = mlflow.register_model(f"runs:/{best.info.run_id}/model", "iris-classifier")
print(version.version)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> str:
    with log.open("ab") as handle:
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=handle, timeout=TIMEOUT, cwd=cwd)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed (exit {result.returncode}); see {log}")
    return result.stdout.decode()


def ours_env(root: Path) -> dict[str, str]:
    home = root / "airflow"
    return {**os.environ, "AIRFLOW_HOME": str(home), "AML_HOME": str(home / "aml"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONWARNINGS": "ignore"}


def ours_round(env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    _run([_bin("airflow"), "dags", "test", "aml_train_register_deploy"], env, log)
    return time.monotonic() - started  # `dags test` exits non-zero when a task failed


def mlflow_round(
    root: Path, server: subprocess.Popen[bytes] | None, log: Path
) -> tuple[float, subprocess.Popen[bytes]]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           # mlflow serve runs a bare `uvicorn`: this interpreter's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = root / "pipeline.py"
    script.write_text(MLFLOW_PIPELINE)
    started = time.monotonic()
    # cwd: MLflow's artifacts go to ./mlruns of a SQLite store.
    version = _run([sys.executable, str(script), env["MLFLOW_TRACKING_URI"], ",".join(map(str, GRID))], env,
                   log, cwd=root).strip().splitlines()[-1]
    if server is not None:  # no rolling update: the old version stops serving first
        _stop(server)
    port = _free_port()
    with log.open("ab") as handle:
        server = subprocess.Popen([_bin("mlflow"), "models", "serve", "-m", f"models:/iris-classifier/{version}",
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=root,
                                  stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    with httpx.Client(timeout=5) as client:
        while True:
            if time.monotonic() - started > TIMEOUT or server.poll() is not None:
                _stop(server)
                raise RuntimeError(f"mlflow models serve gave no 200; see {log}")
            try:
                answer = client.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": ROWS})
                if answer.status_code == 200:
                    predictions = answer.json()["predictions"]
                    if predictions != [0, 2]:
                        raise RuntimeError(f"MLflow's service predicted {predictions}")
                    return time.monotonic() - started, server
            except httpx.TransportError:
                pass
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aml-example-dag-"))
    log = root / "run.log"
    env = ours_env(root)
    server: subprocess.Popen[bytes] | None = None
    ours: list[float] = []
    theirs: list[float] = []
    ok = False
    try:
        _run([_bin("airflow"), "db", "migrate"], env, log)
        for round_ in range(args.rounds):  # interleaved: a load change hits both alike
            ours.append(ours_round(env, log))
            seconds, server = mlflow_round(root, server, log)
            theirs.append(seconds)
            what = "create" if round_ == 0 else "retrain + update"
            print(f"round {round_ + 1} ({what}): ours (airflow dags test, train -> register -> image -> deploy -> "
                  f"score) {ours[-1]:.1f} s; MLflow (script + models serve to first 200) {theirs[-1]:.1f} s",
                  flush=True)
        ok = True
    finally:
        if server is not None:
            _stop(server)
        subprocess.run([_bin("airflow-aml"), "-w", "default", "deployments", "delete", "iris-service"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept for a look: {root}", file=sys.stderr)
    print(f"example DAG, last round: ours {ours[-1]:.1f} s, MLflow {theirs[-1]:.1f} s")
    print(f"ratio: {theirs[-1] / ours[-1]:.2f}x")


if __name__ == "__main__":
    main()
