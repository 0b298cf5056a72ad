"""Runs submitted on a served workspace: the supervisor and the script act with a run token over
HTTP (never the submitter's personal token), and everything a run writes arrives."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.runconfig import RunConfiguration, SweepSpec
from airflow_aml.service import tokens as service_tokens
from airflow_aml.workspace import Workspace
from tests.unit.compute.test_local_e2e import wait_for, wait_for_log
from tests.unit.service.served import Served, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def served(aml_home: Path, tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


@pytest.fixture
def served_ws(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("AML_PRINCIPAL", raising=False)  # the token says who we are
    return Workspace.create("demo", store_uri=served.uri_for("alice"), datastore_root=tmp_path / "datastore")


def write(folder: Path, name: str, code: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))


def test_a_run_logs_through_the_service_with_a_run_token(served_ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "train.py", """
        import json, os
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        for step in range(2000):
            run.log("loss", 1.0 / (step + 1))
        run.log_row("per_class", recall=0.25, precision=0.5)
        run.log_table("curve", {"x": [1, 2], "y": [3, 4]})
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/model.txt", "w") as f:
            f.write("weights")
        with open("extra.txt", "w") as f:
            f.write("uploaded")
        run.upload_file("outputs/extra.txt", "extra.txt")
        print(json.dumps({k: os.environ.get(k) for k in ("AML_STORE_URI", "AML_TOKEN", "AML_RUN_TOKEN")}))
    """)
    run = served_ws.experiment("exp").submit(src, RunConfiguration(script="train.py"))
    record = wait_for(run)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"

    env = json.loads(wait_for_log(run, "AML_STORE_URI").splitlines()[0])
    assert "@" not in env["AML_STORE_URI"] and env["AML_STORE_URI"].startswith("http://127.0.0.1:")
    assert env["AML_TOKEN"] is None
    assert env["AML_RUN_TOKEN"].startswith("aml_run_")
    assert env["AML_RUN_TOKEN"] != served_ws.service_client.token

    metrics = run.get_metrics()
    assert metrics["loss"] == [1.0 / (step + 1) for step in range(2000)]
    assert metrics["per_class"] == {"recall": [0.25], "precision": [0.5]}
    assert metrics["curve"] == {"x": [1, 2], "y": [3, 4]}
    files = run.get_file_names()
    assert {"outputs/model.txt", "outputs/extra.txt", "logs/driver_log.txt"} <= set(files)
    ds = served_ws.get_default_datastore()
    assert ds.read_bytes(f"runs/{run.id}/outputs/model.txt") == b"weights"
    assert served_ws.get_activity(run.id).status is ActivityStatus.SUCCEEDED
    control = "".join(c.text for c in run.read_log() if c.stream == "control")
    assert "Run Completed" in control


def test_an_mlflow_script_logs_into_its_run_with_the_run_token(served_ws: Workspace, tmp_path: Path) -> None:
    """A script written for the mlflow client, submitted unchanged: the target sets MLFLOW_* so that
    mlflow.start_run() resumes this run on the service; its end_run() does not end the run before
    the supervisor has collected outputs/ (the supervisor records the end)."""
    src = tmp_path / "src"
    write(src, "train.py", """
        import os
        import mlflow
        with mlflow.start_run() as active:
            mlflow.log_param("C", "1.0")
            mlflow.log_metric("acc", 0.5, step=0)
            mlflow.log_metric("acc", 0.75, step=1)
            mlflow.set_tag("via", "mlflow")
            with open("report.txt", "w") as f:
                f.write("report")
            mlflow.log_artifact("report.txt")
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/after_end_run.txt", "w") as f:
            f.write("still collected")
        print("mlflow run", active.info.run_id == os.environ["AML_RUN_ID"],
              os.environ["MLFLOW_TRACKING_TOKEN"] == os.environ["AML_RUN_TOKEN"], flush=True)
    """)
    run = served_ws.experiment("mlflow-exp").submit(src, RunConfiguration(script="train.py"))
    record = wait_for(run, timeout=180)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"
    assert "mlflow run True True" in run.get_log_text()
    assert run.get_metrics()["acc"] == [0.5, 0.75]
    assert record.params == {"C": "1.0"} and record.tags["via"] == "mlflow"
    assert {"outputs/report.txt", "outputs/after_end_run.txt"} <= set(run.get_file_names())
    assert [r.id for r in served_ws.experiment("mlflow-exp").get_runs()] == [run.id]  # no second run


def test_a_canceled_scripts_queued_metrics_arrive(served_ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "loop.py", """
        import time
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        for step in range(500):
            run.log("queued", step)
        print("logged", flush=True)
        time.sleep(600)
    """)
    run = served_ws.experiment("exp").submit(src, RunConfiguration(script="loop.py"))
    wait_for_log(run, "logged")
    run.cancel()
    record = wait_for(run)
    assert record.status is RunStatus.CANCELED
    assert len(run.get_metrics()["queued"]) == 500


def test_a_sweep_runs_its_children_under_the_parents_token(served_ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "point.py", """
        import sys
        from airflow_aml.runtime.run import Run
        Run.get_context().log("lr", float(sys.argv[-1]))
    """)
    config = RunConfiguration(script="point.py", sweep=SweepSpec(grid={"lr": (0.1, 0.2)}))
    parent = served_ws.experiment("sweep").submit(src, config)
    record = wait_for(parent)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{parent.get_log_text()}"
    children = list(parent.get_children())
    assert len(children) == 2
    assert all(child.status is RunStatus.COMPLETED for child in children)
    assert sorted(child.get_metrics()["lr"] for child in children) == [0.1, 0.2]


def _run_token(served: Served, ws: Workspace, run_id: str) -> str:
    answer = ws.service_client.request(
        "POST", f"/runs/{run_id}/tokens", content=b'{"secrets": []}', json_body=True)
    return answer.json()["token"]


def test_a_run_token_is_refused_on_another_run_and_after_its_run_ended(
    served: Served, served_ws: Workspace, monkeypatch: pytest.MonkeyPatch,
) -> None:
    served_ws.store.get_or_create_experiment("demo", "exp")
    mine = served_ws.store.create_run(workspace="demo", experiment="exp", submitted_by="alice",
                                      compute_target="local", run_config={"script": "x.py"})
    other = served_ws.store.create_run(workspace="demo", experiment="exp", submitted_by="alice",
                                       compute_target="local", run_config={"script": "x.py"})
    token = _run_token(served, served_ws, mine.run_id)
    api = httpx.Client(base_url=served.url + "/api/v1", headers={"Authorization": f"Bearer {token}"})
    assert api.get(f"/runs/{mine.run_id}").status_code == 200
    refused = api.get(f"/runs/{other.run_id}")
    assert refused.status_code == 403, refused.text

    served_ws.store.update_run_status(mine.run_id, RunStatus.COMPLETED)
    assert api.get(f"/runs/{mine.run_id}").status_code == 200  # within the grace period
    monkeypatch.setattr(service_tokens, "RUN_TOKEN_GRACE", timedelta(seconds=0.5))
    time.sleep(1.0)
    assert api.get(f"/runs/{mine.run_id}").status_code == 401


def test_a_run_reads_only_the_secrets_its_configuration_names(served_ws: Workspace, tmp_path: Path) -> None:
    served_ws.set_secret("db-password", "hunter2")
    served_ws.set_secret("other", "not-yours")
    src = tmp_path / "src"
    write(src, "secret.py", """
        from airflow_aml.exceptions import AuthorizationError
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        print("named:", run.workspace.vault.get("db-password") == "hunter2", flush=True)
        try:
            run.workspace.vault.get("other")
        except AuthorizationError:
            print("other: refused", flush=True)
    """)
    run = served_ws.experiment("exp").submit(src, RunConfiguration(script="secret.py", secrets=["db-password"]))
    record = wait_for(run)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"
    out = wait_for_log(run, "other:")
    assert "named: True" in out and "other: refused" in out


def test_the_supervisor_is_never_refused_a_call(served_ws: Workspace, tmp_path: Path, aml_home: Path) -> None:
    src = tmp_path / "src"
    write(src, "ok.py", "print('ok')\n")
    run = served_ws.experiment("exp").submit(src, RunConfiguration(script="ok.py"))
    assert wait_for(run).status is RunStatus.COMPLETED
    log = (aml_home / "runs" / run.id / "supervisor.log").read_text()
    assert '"HTTP/1.1 2' in log
    assert not [line for line in log.splitlines() if '"HTTP/1.1 4' in line or '"HTTP/1.1 5' in line]
