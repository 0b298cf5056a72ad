"""``AmlDeploymentSensor`` on deployment records driven by hand (no supervisor: fast). A real
service is waited for in ``tests/unit/operators/test_deployment.py``."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    TaskDeferred,
)

from airflow_aml.entities import ActivityStatus, DeploymentState
from airflow_aml.images import builders
from airflow_aml.images.image import Image
from airflow_aml.sensors.deployment import AmlDeploymentSensor
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds
from airflow_aml.workspace import Workspace
from tests.unit.images.conftest import FakeBuilder


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    """The workspace with deployment ``svc`` (record only) of image ``img:1``, being created."""
    builders.register_image_builder("fake", FakeBuilder)
    FakeBuilder.fail_with = None
    model = tmp_path / "model.txt"
    model.write_text("w\n")
    workspace.register_model("m", path=model)
    Image.create(workspace, "img", {"models": ["m"], "builtin_scorer": "sklearn"}, builder="fake")
    workspace.store.create_deployment(workspace.name, "svc", target="local", image_id="img:1", created_by="alice",
                                      config={}, scoring_uri="http://127.0.0.1:1/score")
    _new_activity(workspace)
    yield workspace
    builders._KINDS.pop("fake", None)


def _new_activity(ws: Workspace, kind: str = "deployment_create") -> str:
    activity = ws.store.create_activity(ws.name, kind=kind, target_id="svc", message="Queued")
    ws.store.update_deployment(ws.name, "svc", activity_id=activity.activity_id)
    return activity.activity_id


def _activity_id(ws: Workspace) -> str:
    return ws.get_deployment("svc").record.activity_id


def _set(ws: Workspace, *, status: ActivityStatus | None = None, state: DeploymentState | None = None,
         error: str | None = None, progress: float = 0.5, message: str = "") -> None:
    if status is not None:
        ws.store.update_activity(_activity_id(ws), status=status, progress=progress, message=message, error=error)
    if state is not None:
        ws.store.update_deployment(ws.name, "svc", state=state, error=error)


def _sensor(aml_conn: str, **kwargs) -> AmlDeploymentSensor:
    return AmlDeploymentSensor(task_id="wait", deployment_name="svc", aml_conn_id=aml_conn, **kwargs)


def test_waits_for_the_activity_then_the_healthy_state(aml_conn: str, ws: Workspace, context, capsys) -> None:
    sensor = _sensor(aml_conn)
    _set(ws, status=ActivityStatus.RUNNING, progress=0.4, message="2 of 5 replicas ready")
    assert sensor.poke(context) is False
    output = capsys.readouterr()
    assert "deployment_create Running 40% 2 of 5 replicas ready" in output.out + output.err
    _set(ws, status=ActivityStatus.SUCCEEDED, progress=1.0, state=DeploymentState.HEALTHY)
    assert sensor.poke(context) is True


def test_unhealthy_after_the_activity_is_waited_for(aml_conn: str, ws: Workspace, context) -> None:
    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.UNHEALTHY, error="replica 0 stopped")
    assert _sensor(aml_conn).poke(context) is False  # the supervisor restarts replicas
    _set(ws, state=DeploymentState.HEALTHY)
    assert _sensor(aml_conn).poke(context) is True


@pytest.mark.parametrize(
    ("status", "state", "error", "match"),
    [
        (ActivityStatus.FAILED, DeploymentState.FAILED, "port in use", "deployment_create ended Failed: port in use"),
        (ActivityStatus.FAILED, DeploymentState.HEALTHY, "new replicas never ready", "never ready"),  # update failed
        (ActivityStatus.SUCCEEDED, DeploymentState.FAILED, "init() raised", "is Failed: init\\(\\) raised"),
        (ActivityStatus.SUCCEEDED, DeploymentState.DELETING, None, "being deleted"),
    ],
)
def test_fails_with_the_recorded_error(aml_conn: str, ws: Workspace, context, status, state, error, match) -> None:
    _set(ws, status=status, state=state, error=error)
    with pytest.raises(AirflowException, match=match):
        _sensor(aml_conn).poke(context)


def test_a_deployment_whose_supervisor_is_gone_fails_at_once(aml_conn: str, ws: Workspace, context) -> None:
    import socket

    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.HEALTHY)
    # Supervised on this machine, but no supervisor runs (killed, machine restarted).
    ws.store.update_deployment(ws.name, "svc", runtime={"supervisor": {"host": socket.gethostname(), "pid": 1}})
    with pytest.raises(AirflowException, match="supervisor is not running .*deployments restore"):
        _sensor(aml_conn).poke(context)
    # Supervised elsewhere: this machine cannot tell, the record is trusted.
    ws.store.update_deployment(ws.name, "svc", runtime={"supervisor": {"host": "another-host", "pid": 1}})
    assert _sensor(aml_conn).poke(context) is True


def test_missing_deployment_fails(aml_conn: str, ws: Workspace, context) -> None:
    with pytest.raises(AirflowException, match="'nope' does not exist"):
        AmlDeploymentSensor(task_id="w", deployment_name="nope", aml_conn_id=aml_conn).poke(context)


def test_reschedule_mode(aml_conn: str, ws: Workspace, context) -> None:
    with pytest.raises(AirflowRescheduleException):
        _sensor(aml_conn, mode="reschedule", poke_interval=5).execute(context)
    assert context["ti"].xcom["_link_AmlDeploymentLink"].endswith("/workspaces/ws/deployments/svc")


def test_deferrable_follows_the_activity(aml_conn: str, ws: Workspace, context) -> None:
    sensor = _sensor(aml_conn, deferrable=True, defer_after=0, timeout=60, poke_interval=3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AmlActivityTrigger) and deferred.value.method_name == "execute_complete"
    assert (trigger.activity_id, trigger.poll_interval) == (_activity_id(ws), 3)
    end_time = deferred.value.kwargs["end_time"]
    assert end_time == trigger.end_time and time.time() + 50 < end_time <= time.time() + 60

    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.HEALTHY)
    event = {"status": "success", "message": "done", "activity_id": trigger.activity_id, "target_id": "svc"}
    assert sensor.execute_complete(context, event, end_time=end_time) is None
    with pytest.raises(AirflowException, match="boom"):
        sensor.execute_complete(context, {"status": "error", "message": "boom"}, end_time=end_time)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(context, {"status": "timeout", "message": "late"}, end_time=end_time)
    with pytest.raises(AirflowException, match="no event"):
        sensor.execute_complete(context, None, end_time=end_time)


def test_deferrable_defers_again_on_a_newer_activity(aml_conn: str, ws: Workspace, context) -> None:
    sensor = _sensor(aml_conn, deferrable=True, defer_after=0, timeout=60, poke_interval=3)
    first = _activity_id(ws)
    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.TRANSITIONING)
    second = _new_activity(ws, "deployment_update")  # an update started meanwhile
    event = {"status": "success", "message": "done", "activity_id": first, "target_id": "svc"}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(context, event, end_time=time.time() + 30)
    assert deferred.value.trigger.activity_id == second


def test_deferrable_unhealthy_waits_on_a_timer_then_looks_again(aml_conn: str, ws: Workspace, context) -> None:
    sensor = _sensor(aml_conn, deferrable=True, defer_after=0, timeout=60, poke_interval=3)
    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.UNHEALTHY, error="replica 0 stopped")
    before = datetime.datetime.now(datetime.UTC)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert not isinstance(deferred.value.trigger, AmlActivityTrigger)  # a timer: nothing to follow
    # ... never shorter than the settle time, though poke_interval is 3 s.
    assert deferred.value.trigger.moment >= before + datetime.timedelta(seconds=settle_seconds())
    end_time = deferred.value.kwargs["end_time"]
    _set(ws, state=DeploymentState.HEALTHY)
    moment = datetime.datetime.now(datetime.UTC)  # a timer's event is its moment
    assert sensor.execute_complete(context, moment, end_time=end_time) is None


def test_deferrable_activity_that_ends_within_defer_after_never_defers(aml_conn: str, ws: Workspace, context) -> None:
    sensor = _sensor(aml_conn, deferrable=True, defer_after=60, timeout=120, poke_interval=1)
    def deployed() -> None:  # the supervisor: the state first, then the activity's end
        _set(ws, state=DeploymentState.HEALTHY)
        _set(ws, status=ActivityStatus.SUCCEEDED)

    timer = threading.Timer(0.5, deployed)
    timer.start()
    try:
        assert sensor.execute(context) is None  # Healthy while the task waited: no TaskDeferred
    finally:
        timer.join()


def test_reschedule_is_never_sooner_than_the_settle_time(aml_conn: str, ws: Workspace, context) -> None:
    before = datetime.datetime.now(datetime.UTC)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        _sensor(aml_conn, mode="reschedule", poke_interval=2).execute(context)
    assert rescheduled.value.reschedule_date >= before + datetime.timedelta(seconds=settle_seconds())


def test_deferrable_times_out_at_its_deadline(aml_conn: str, ws: Workspace, context) -> None:
    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.UNHEALTHY)
    sensor = _sensor(aml_conn, deferrable=True, timeout=60)
    with pytest.raises(AirflowSensorTimeout, match="not Healthy"):
        sensor.execute_complete(context, datetime.datetime.now(datetime.UTC), end_time=time.time() - 1)


def test_healthy_deferrable_sensor_returns_at_once(aml_conn: str, ws: Workspace, context) -> None:
    _set(ws, status=ActivityStatus.SUCCEEDED, state=DeploymentState.HEALTHY)
    assert _sensor(aml_conn, deferrable=True).execute(context) is None
