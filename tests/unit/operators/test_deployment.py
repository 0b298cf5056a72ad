"""The web-service operators.

Validation paths are fast (nothing is started). The real path runs once per module: a scikit-learn
model built into an image by the real ``local`` builder and deployed as real local services
(supervisor + replica processes, ~10-20 s each), scored over HTTP. Every deployment those tests
create is deleted when the module ends: supervisors outlive the test process otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_aml.deployments.deployment import Deployment
from airflow_aml.entities import DeploymentState, ImageStatus
from airflow_aml.exceptions import DeploymentNotFoundError
from airflow_aml.images import builders
from airflow_aml.images.image import Image
from airflow_aml.operators.deployment import (
    AmlDeleteWebServiceOperator,
    AmlDeployWebServiceOperator,
    image_reference,
)
from airflow_aml.operators.image import AmlBuildImageOperator
from airflow_aml.sensors.deployment import AmlDeploymentSensor
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds
from airflow_aml.workspace import Workspace
from tests.unit.conftest import make_context
from tests.unit.images.conftest import FakeBuilder

SAMPLE = {"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


# ---------------------------------------------------------------------- fast: validation
def test_image_reference() -> None:
    assert image_reference("img") == "img"
    assert image_reference(" img:3 ") == "img:3"
    xcom = {"name": "img", "version": 3, "id": "img:3", "location": "/x", "builder": "local"}
    assert image_reference(xcom) == "img:3"
    assert image_reference(str(xcom)) == "img:3"  # rendered as text (no native templates)
    assert image_reference({"name": "img", "version": 2}) == "img:2"
    for bad in ("", None, {"builder": "local"}, "{not python"):
        with pytest.raises(ValueError):
            image_reference(bad)


@pytest.fixture
def fake_images(workspace: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    """The workspace with image ``fake:1`` built (fake builder: not servable locally) and ``fake:2`` Failed."""
    builders.register_image_builder("fake", FakeBuilder)
    FakeBuilder.fail_with = None
    model = tmp_path / "model.txt"
    model.write_text("w\n")
    workspace.register_model("m", path=model)
    spec = {"models": ["m"], "builtin_scorer": "sklearn"}
    Image.create(workspace, "fake", spec, builder="fake")
    FakeBuilder.fail_with = RuntimeError("broken")
    with pytest.raises(Exception, match="broken"):
        Image.create(workspace, "fake", spec, builder="fake")
    FakeBuilder.fail_with = None
    yield workspace
    builders._KINDS.pop("fake", None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": "nosuch"}, "nosuch"),
        ({"image": "fake:9"}, "fake"),
        ({"image": "fake:x"}, "name:version"),
        ({"image": "fake:2"}, "Failed"),  # not built: cannot be deployed
        ({"image": "fake:1"}, "'fake' builder"),  # the local target serves local images only
        ({"image": "fake:1", "target": "mars"}, "Unknown deployment target"),
        ({"image": "fake:1", "config": {"replicas": 0}}, "replicas"),
        ({"image": "fake:1", "config": {"replica": 2}}, "replica"),
        ({"image": "fake:1", "config": "replicas=2"}, "mapping"),
        ({"image": "fake:1", "deployment_name": "bad name"}, "bad name"),
    ],
)
def test_validation_errors_fail_without_retry_and_create_nothing(
    aml_conn: str, fake_images: Workspace, kwargs: dict[str, Any], match: str
) -> None:
    op = AmlDeployWebServiceOperator(**{"task_id": "deploy", "deployment_name": "svc", "aml_conn_id": aml_conn,
                                        **kwargs})
    with pytest.raises(AirflowFailException, match=match):
        op.execute(make_context())
    assert fake_images.list_deployments() == []


def test_a_deployment_on_another_target_is_not_moved(aml_conn: str, fake_images: Workspace) -> None:
    fake_images.store.create_deployment(fake_images.name, "svc", target="docker", image_id="fake:1",
                                        created_by="alice", config={})
    op = AmlDeployWebServiceOperator(task_id="deploy", deployment_name="svc", image="fake:1", aml_conn_id=aml_conn)
    with pytest.raises(AirflowFailException, match="'docker' target"):
        op.execute(make_context())


def test_delete_is_idempotent_and_checks_the_name(aml_conn: str, workspace: Workspace, capsys) -> None:
    op = AmlDeleteWebServiceOperator(task_id="delete", deployment_name="absent", aml_conn_id=aml_conn)
    assert op.execute(make_context()) == {"name": "absent", "deleted": False}
    assert "does not exist: nothing to delete" in "".join(capsys.readouterr())
    with pytest.raises(AirflowFailException, match="bad name"):
        AmlDeleteWebServiceOperator(task_id="d", deployment_name="bad name", aml_conn_id=aml_conn).execute(
            make_context())


# ---------------------------------------------------------------------- real: build, deploy, score
CONN = "aml_served"


@dataclass
class Served:
    env: dict[str, str]
    store_uri: str
    image: dict[str, Any]
    deployments: list[str] = field(default_factory=list)

    def workspace(self) -> Workspace:
        return Workspace.get("ws", store_uri=self.store_uri)


def _apply(env: dict[str, str], mp: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        mp.setenv(name, value)
    for name in ("AML_STORE_URI", "AML_SECRET_KEY"):
        mp.delenv(name, raising=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A workspace (temp $AML_HOME) with an iris classifier built into image ``iris-img:1`` by the
    real local builder, through the operator. Deletes every deployment the tests register."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("served")
    store_uri = f"sqlite:///{root / 'aml.db'}"
    env = {
        "AML_HOME": str(root / "aml-home"), "AML_PRINCIPAL": "alice", "AML_PROGRESS": "0",
        f"AIRFLOW_CONN_{CONN.upper()}": json.dumps({
            "conn_type": "aml_workspace", "schema": "ws",
            "extra": {"store_uri": store_uri, "datastore_root": str(root / "datastore")},
        }),
    }
    with pytest.MonkeyPatch.context() as mp:
        _apply(env, mp)
        ws = Workspace.create("ws", store_uri=store_uri, datastore_root=root / "datastore")
        x, y = load_iris(return_X_y=True)
        (root / "model").mkdir()
        joblib.dump(LogisticRegression(max_iter=500).fit(x, y), root / "model" / "model.pkl")
        ws.register_model("iris", path=root / "model")
        image = AmlBuildImageOperator(
            task_id="build", image_name="iris-img", models=["iris"], builtin_scorer="sklearn", aml_conn_id=CONN,
            poll_interval=0.5,
        ).execute(make_context(task_id="build"))
        state = Served(env=env, store_uri=store_uri, image=image)
        try:
            yield state
        finally:
            _apply(env, mp)  # a test's own monkeypatch may have restored older values meanwhile
            for name in state.deployments:
                Deployment.delete_if_exists(state.workspace(), name, timeout=60)


@pytest.fixture
def real(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    _apply(served.env, monkeypatch)
    return served


def test_real_build_deploy_score_redeploy_and_delete(real: Served) -> None:
    assert real.image["id"] == "iris-img:1" and real.image["builder"] == "local"
    ws = real.workspace()
    assert ws.get_image("iris-img", 1).status is ImageStatus.SUCCEEDED
    real.deployments.append("iris-svc")

    context = make_context(task_id="deploy")
    op = AmlDeployWebServiceOperator(
        task_id="deploy", deployment_name="iris-svc", image=real.image, config={"replicas": 1},
        tags={"stage": "test"}, aml_conn_id=CONN, poll_interval=0.5, timeout=180,
    )
    result = op.execute(context)
    service = ws.get_deployment("iris-svc")
    assert result == {
        "name": "iris-svc", "scoring_uri": service.scoring_uri, "state": "Healthy", "image_id": "iris-img:1",
        "swagger_uri": service.swagger_uri,
    }
    assert not any(key in json.dumps(result) for key in service.get_keys())  # no secret in XCom
    assert context["ti"].xcom["_link_AmlDeploymentLink"].endswith("/workspaces/ws/deployments/iris-svc")
    ti = context["ti"]  # the task instance is recorded, for the views on Airflow's task pages
    assert service.tags == {"stage": "test", "airflow.dag_id": ti.dag_id, "airflow.task_id": "deploy",
                            "airflow.run_id": ti.run_id, "airflow.map_index": str(ti.map_index)}
    assert service.config.replicas == 1

    assert service.run(SAMPLE)["predictions"] == [0, 2]
    assert httpx.post(service.scoring_uri, json=SAMPLE, timeout=10).status_code == 401  # key required

    sensor = AmlDeploymentSensor(task_id="wait", deployment_name="iris-svc", aml_conn_id=CONN, poke_interval=1)
    assert sensor.poke(make_context()) is True

    # Another DAG run with the same image and config: an update that changes nothing (no restart).
    again = AmlDeployWebServiceOperator(
        task_id="deploy", deployment_name="iris-svc", image="iris-img", aml_conn_id=CONN, poll_interval=0.5,
    ).execute(make_context(task_id="deploy", run_id="manual__2"))
    assert again["state"] == "Healthy" and again["scoring_uri"] == result["scoring_uri"]
    assert "no change" in ws.get_deployment("iris-svc").activity.message

    # A retry of the first task instance finds what it did.
    assert op.execute(make_context(task_id="deploy"))["state"] == "Healthy"

    deleted = AmlDeleteWebServiceOperator(task_id="delete", deployment_name="iris-svc", aml_conn_id=CONN)
    assert deleted.execute(make_context()) == {"name": "iris-svc", "deleted": True}
    with pytest.raises(DeploymentNotFoundError):
        ws.get_deployment("iris-svc")
    with pytest.raises(httpx.HTTPError):
        httpx.post(result["scoring_uri"], json=SAMPLE, timeout=5)
    assert deleted.execute(make_context()) == {"name": "iris-svc", "deleted": False}


def test_real_retry_reattaches_to_the_create_its_crashed_try_started(
    real: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """Durable execution: the activity id in the task state; the retry follows that activity."""
    ws = real.workspace()
    real.deployments.append("iris-durable")
    context = make_context(task_id="deploy", run_id="manual__durable")
    kwargs: dict[str, Any] = {"task_id": "deploy", "deployment_name": "iris-durable", "image": "iris-img:1",
                              "aml_conn_id": CONN, "poll_interval": 0.5, "timeout": 180}
    AmlDeployWebServiceOperator(**kwargs, wait_for_completion=False).execute(context)
    activity_id = ws.get_deployment("iris-durable").record.activity_id
    assert context["task_state_store"].values == {"aml_activity_id": activity_id}
    capsys.readouterr()

    result = AmlDeployWebServiceOperator(**kwargs).execute(context)  # the try after a crashed worker
    log = "".join(capsys.readouterr())
    assert "Reconnecting to existing job" in log or "Job already completed successfully" in log
    assert result["state"] == "Healthy" and result["image_id"] == "iris-img:1"
    assert [a.activity_id for a in ws.list_activities(target_id="iris-durable")] == [activity_id]


def test_real_deferrable_deploy_and_sensor(real: Served) -> None:
    ws = real.workspace()
    real.deployments.append("iris-deferred")
    context = make_context(task_id="deploy")
    op = AmlDeployWebServiceOperator(
        task_id="deploy", deployment_name="iris-deferred", image="iris-img:1", aml_conn_id=CONN, deferrable=True,
        defer_after=0, poll_interval=3, timeout=300,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AmlActivityTrigger) and deferred.value.method_name == "execute_complete"
    service = ws.get_deployment("iris-deferred")
    assert trigger.activity_id == service.record.activity_id and trigger.poll_interval == 3
    assert trigger.settle == settle_seconds()
    assert trigger.end_time is not None and trigger.end_time > time.time() + 250

    # The sensor, deferred too, follows the same activity.
    sensor = AmlDeploymentSensor(task_id="wait", deployment_name="iris-deferred", aml_conn_id=CONN,
                                 deferrable=True, defer_after=0, poke_interval=2, timeout=120)
    sensor_context = make_context(task_id="wait")
    with pytest.raises(TaskDeferred) as sensor_deferred:
        sensor.execute(sensor_context)
    assert sensor_deferred.value.trigger.activity_id == trigger.activity_id
    end_time = sensor_deferred.value.kwargs["end_time"]

    service.wait_for_deployment(timeout=180)  # what the trigger waits for
    event = {"status": "success", "message": "ok", "activity_id": trigger.activity_id, "target_id": "iris-deferred"}
    result = op.execute_complete(context, event)
    assert result["state"] == DeploymentState.HEALTHY.value and result["image_id"] == "iris-img:1"
    assert ws.get_deployment("iris-deferred").run(SAMPLE)["predictions"] == [0, 2]
    assert sensor.execute_complete(sensor_context, event, end_time=end_time) is None

    with pytest.raises(AirflowException, match="replica died") as raised:
        op.execute_complete(context, {"status": "error", "message": "deployment_create Failed: replica died",
                                      "target_id": "iris-deferred"})
    assert "Deployment logs (end):" in str(raised.value)

    Deployment.delete_if_exists(ws, "iris-deferred")
