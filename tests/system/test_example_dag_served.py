"""The train -> register -> image -> deploy -> score example DAG against a served workspace:
every task reaches the workspace through the service (an ``aml_workspace`` connection naming its
URL with a personal access token), the runs act with run tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import DeploymentState, ImageStatus, RunStatus
from airflow_aml.workspace import Workspace
from tests.system.test_example_dags import SERVING_TASKS, _load, _states
from tests.unit.service.served import Served, serve

CONN_ID = "aml_workspace"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "aml"))
    monkeypatch.setenv("AML_PROGRESS", "0")
    for name in ("AML_STORE_URI", "AML_PRINCIPAL", "AML_TOKEN", "AML_RUN_TOKEN", "AIRFLOW_CONN_AML_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


@pytest.fixture
def workspace(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    token = served.token("alice")
    ws = Workspace.create("demo", store_uri=served.url.replace("http://", f"http://:{token}@"))
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(
        {"conn_type": "aml_workspace", "host": served.url, "schema": "demo", "password": token}))
    yield ws
    for deployment in ws.list_deployments():
        Deployment.delete_if_exists(ws, deployment.name, timeout=120)


@pytest.mark.timeout(240)
def test_train_register_deploy_dag_through_the_service(airflow_db: Path, workspace: Workspace) -> None:
    dag = _load("aml_train_register_deploy").dag
    conf = {"aml_conn_id": CONN_ID, "experiment": "iris", "grid_C": [1.0], "model_name": "iris",
            "image_name": "iris-scorer", "deployment_name": "iris-service"}
    dag_run = dag.test(run_conf=conf)
    assert _states(dag_run) == {
        "train": "success", "best_run": "success", "register_model": "success",
        **dict.fromkeys(SERVING_TASKS, "success"),
    }
    [sweep] = workspace.experiment("iris").get_runs()
    assert sweep.status is RunStatus.COMPLETED
    assert all(child.status is RunStatus.COMPLETED for child in sweep.get_children())
    [model] = workspace.list_models(name="iris")
    assert "model.pkl" in model.files()
    [image] = workspace.list_images(name="iris-scorer")
    assert image.status is ImageStatus.SUCCEEDED
    service = workspace.get_deployment("iris-service")
    assert service.state is DeploymentState.HEALTHY
    answer = service.run({"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert answer["predictions"] == [0, 2]
