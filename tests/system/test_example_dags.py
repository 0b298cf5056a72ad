"""The example DAGs, run end to end with ``dag.test()`` on the embedded default.

Real training runs (scikit-learn on iris) on the local compute target, a real image build (local
builder) and a real local web service, in a throw-away $AML_HOME and $AIRFLOW_HOME: the same path
as the README's main-job command. Every service a test deploys is deleted when it ends (its
supervisor would outlive the test otherwise).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import DeploymentState, ImageStatus, RunStatus
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.workspace import Workspace

DAGS = Path(__file__).resolve().parents[2] / "dags_examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", DAGS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def embedded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "aml"
    monkeypatch.setenv("AML_HOME", str(home))
    monkeypatch.setenv("AML_PROGRESS", "0")
    for name in ("AML_STORE_URI", "AML_PRINCIPAL", "AIRFLOW_CONN_AML_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def deployments(embedded_home: Path) -> Iterator[list[str]]:
    """Names of the services a test deploys in the embedded default workspace: deleted at the end."""
    names: list[str] = []
    yield names
    if names and Workspace.list():
        ws = Workspace.get("default")
        for name in names:
            Deployment.delete_if_exists(ws, name, timeout=120)


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


SERVING_TASKS = ("build_image", "deploy", "wait_healthy", "score_sample")


@pytest.mark.parametrize("deferrable", [False, True], ids=["waiting", "deferrable"])
def test_train_register_deploy_dag_end_to_end(
    airflow_db: Path, embedded_home: Path, deployments: list[str], deferrable: bool
) -> None:
    dag = _load("aml_train_register_deploy").dag
    for task_id in ("train", "build_image", "deploy", "wait_healthy"):
        dag.get_task(task_id).deferrable = deferrable
    experiment = f"iris-{'deferred' if deferrable else 'waiting'}"
    service_name = f"{experiment}-service"
    deployments.append(service_name)
    conf = {"experiment": experiment, "grid_C": [0.05, 1.0], "model_name": experiment,
            "image_name": f"{experiment}-scorer", "deployment_name": service_name}
    dag_run = dag.test(run_conf=conf)
    assert _states(dag_run) == {
        "train": "success", "best_run": "success", "register_model": "success",
        **dict.fromkeys(SERVING_TASKS, "success"),
    }

    ws = Workspace.get("default")
    [sweep] = ws.experiment(experiment).get_runs()
    children = sweep.get_children()
    assert [c.record.params["C"] for c in children] == ["0.05", "1.0"]
    assert all(c.status is RunStatus.COMPLETED for c in children)
    best = ws.experiment(experiment).best_run("cv_accuracy", parent_run_id=sweep.id)
    assert best is not None and best.record.params["C"] == "1.0"
    [model] = ws.list_models(name=experiment)
    assert model.version == 1 and model.record.run_id == best.id
    assert "model.pkl" in model.files()
    assert float(model.record.properties["metric.cv_accuracy"]) == best.get_metrics()["cv_accuracy"]

    [image] = ws.list_images(name=f"{experiment}-scorer")
    assert image.status is ImageStatus.SUCCEEDED and image.model_ids == [model.id]
    assert image.record.builder == "local" and image.tags["dag_run"] == dag_run.run_id
    service = ws.get_deployment(service_name)
    assert service.state is DeploymentState.HEALTHY and service.image_id == image.id
    assert service.target == "local" and service.config.replicas == 1
    # The operators mark what they make with the task instance (for the ML objects tab).
    assert service.tags == {"model": model.id, "dag_run": dag_run.run_id, "airflow.dag_id": dag.dag_id,
                            "airflow.run_id": dag_run.run_id, "airflow.task_id": "deploy",
                            "airflow.map_index": "-1"}
    assert model.tags["airflow.task_id"] == "register_model" and image.tags["airflow.task_id"] == "build_image"
    # The service outlives the DAG run; score_sample got [0, 2] from it (else it failed).
    answer = service.run({"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert answer["predictions"] == [0, 2]


def test_threshold_miss_stops_before_registering(airflow_db: Path, embedded_home: Path) -> None:
    dag = _load("aml_train_register_deploy").dag
    dag_run = dag.test(run_conf={"experiment": "iris-strict", "grid_C": [0.01], "threshold": 0.99,
                                 "model_name": "iris-strict"})
    states = _states(dag_run)
    assert states["train"] == "success"
    assert states["best_run"] == "failed"
    assert states["register_model"] == "upstream_failed"
    assert all(states[task_id] == "upstream_failed" for task_id in SERVING_TASKS)
    ws = Workspace.get("default")
    assert ws.list_models(name="iris-strict") == []
    assert ws.list_images() == [] and ws.list_deployments() == []


def test_scheduled_retraining_registers_only_a_better_model(airflow_db: Path, embedded_home: Path) -> None:
    dag = _load("aml_scheduled_retraining").dag
    first = dag.test(run_conf={"C": 1.0})
    assert _states(first)["register_if_better"] == "success"
    second = dag.test(run_conf={"C": 0.01})  # a worse model: not registered
    assert _states(second) == {"train": "success", "wait_for_training": "success", "register_if_better": "skipped"}
    assert [m.version for m in Workspace.get("default").list_models(name="iris-classifier")] == [1]


def test_dag_on_a_connection_added_with_the_airflow_cli(airflow_db: Path, embedded_home: Path, tmp_path: Path) -> None:
    """`airflow connections add --conn-type aml_workspace`, then `airflow dags test` on that connection,
    each in its own process as a user would run them: the tasks use the connection's workspace."""
    import json
    import os
    import subprocess
    import sys

    def airflow(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=os.environ.copy(), capture_output=True, text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    store_uri = f"sqlite:///{tmp_path / 'team.db'}"
    extra = {"store_uri": store_uri, "datastore_root": str(tmp_path / "team-datastore")}
    airflow("connections", "add", "aml_team", "--conn-type", "aml_workspace", "--conn-schema", "team",
            "--conn-extra", json.dumps(extra))
    airflow("dags", "test", "aml_scheduled_retraining", "--conf",
            json.dumps({"aml_conn_id": "aml_team", "experiment": "team-retraining"}))

    team = Workspace.get("team", store_uri=store_uri)
    assert [r.status for r in team.experiment("team-retraining").get_runs()] == [RunStatus.COMPLETED]
    assert [m.version for m in team.list_models(name="iris-classifier")] == [1]
    assert (tmp_path / "team-datastore").is_dir()
    assert Workspace.list() == []  # nothing went to the embedded default


def test_the_dag_trains_on_the_compute_target_its_param_names(
    airflow_db: Path, embedded_home: Path, deployments: list[str]
) -> None:
    """The same DAG, its sweep on a spark target (spark-submit, local[1]) chosen from the trigger form."""
    AmlWorkspaceHook().workspace.register_compute_target("spark-local", kind="spark", config={"master": "local[1]"})
    dag = _load("aml_train_register_deploy").dag
    deployments.append("iris-spark-service")
    dag_run = dag.test(run_conf={"experiment": "iris-spark", "compute_target": "spark-local", "grid_C": [1.0],
                                 "model_name": "iris-spark", "image_name": "iris-spark-scorer",
                                 "deployment_name": "iris-spark-service"})
    assert _states(dag_run) == {
        "train": "success", "best_run": "success", "register_model": "success",
        **dict.fromkeys(SERVING_TASKS, "success"),
    }
    ws = Workspace.get("default")
    [sweep] = ws.experiment("iris-spark").get_runs()
    [child] = sweep.get_children()
    assert sweep.record.compute_target == "spark-local"
    assert "Starting spark-submit: --master local[1]" in "".join(
        c.text for c in child.read_log() if c.stream == "control")
    [model] = ws.list_models(name="iris-spark")
    assert model.record.run_id == child.id
    answer = ws.get_deployment("iris-spark-service").run({"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert answer["predictions"] == [0, 2]
