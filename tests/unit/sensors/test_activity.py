from __future__ import annotations

import datetime
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowRescheduleException, TaskDeferred

from airflow_aml.entities import ActivityStatus
from airflow_aml.sensors.activity import AmlActivitySensor, AmlRunSensor
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds
from airflow_aml.workspace import Workspace


def _activity(workspace: Workspace) -> str:
    return workspace.store.create_activity(workspace.name, kind="run", target_id="r1").activity_id


def test_poke_reports_progress_and_finishes(aml_conn: str, workspace: Workspace, context, capsys) -> None:
    activity_id = _activity(workspace)
    sensor = AmlActivitySensor(task_id="s", activity_id=activity_id, aml_conn_id=aml_conn)
    workspace.store.update_activity(activity_id, status=ActivityStatus.RUNNING, progress=0.4, message="epoch 4/10")
    assert sensor.poke(context) is False
    output = capsys.readouterr()
    assert "40% epoch 4/10" in output.out + output.err  # Airflow's task logger is structlog
    workspace.store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0)
    assert sensor.poke(context) is True


def test_poke_fails_on_a_failed_activity(aml_conn: str, workspace: Workspace, context) -> None:
    activity_id = _activity(workspace)
    workspace.store.update_activity(activity_id, status=ActivityStatus.FAILED, error="out of memory")
    with pytest.raises(AirflowException, match="ended Failed: out of memory"):
        AmlActivitySensor(task_id="s", activity_id=activity_id, aml_conn_id=aml_conn).poke(context)


@pytest.mark.parametrize(("poke_interval", "expected"), [(5, settle_seconds()), (40, 40)])
def test_reschedule_mode_never_reschedules_sooner_than_the_settle_time(
    aml_conn: str, workspace: Workspace, context, poke_interval: float, expected: float
) -> None:
    sensor = AmlActivitySensor(
        task_id="s", activity_id=_activity(workspace), aml_conn_id=aml_conn, mode="reschedule",
        poke_interval=poke_interval,
    )
    before = datetime.datetime.now(datetime.UTC)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        sensor.execute(context)
    after = datetime.datetime.now(datetime.UTC)
    delay = datetime.timedelta(seconds=expected)
    assert before + delay <= rescheduled.value.reschedule_date <= after + delay


def test_poke_mode_keeps_its_interval(aml_conn: str, workspace: Workspace) -> None:
    sensor = AmlActivitySensor(task_id="s", activity_id="a", aml_conn_id=aml_conn, poke_interval=1)
    assert sensor._get_next_poke_interval(0.0, lambda: 0.0, 1) == 1


def test_deferrable_sensor(aml_conn: str, workspace: Workspace, context) -> None:
    activity_id = _activity(workspace)
    sensor = AmlActivitySensor(
        task_id="s", activity_id=activity_id, aml_conn_id=aml_conn, deferrable=True, defer_after=0.3, timeout=60,
        poke_interval=3,
    )
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert time.monotonic() - started >= 0.3  # waited in the task first
    trigger = deferred.value.trigger
    assert isinstance(trigger, AmlActivityTrigger)
    assert (trigger.activity_id, trigger.poll_interval, trigger.settle) == (activity_id, 3, settle_seconds())
    sensor.execute_complete(context, {"status": "success", "message": "done"})
    with pytest.raises(AirflowException, match="timed out"):
        sensor.execute_complete(context, {"status": "timeout", "message": "timed out"})


def test_deferrable_sensor_on_an_activity_that_ends_within_defer_after_never_defers(
    aml_conn: str, workspace: Workspace, context
) -> None:
    activity_id = _activity(workspace)
    sensor = AmlActivitySensor(task_id="s", activity_id=activity_id, aml_conn_id=aml_conn, deferrable=True,
                               defer_after=60, timeout=120, poke_interval=1)
    timer = threading.Timer(0.5, workspace.store.update_activity, args=(activity_id,),
                            kwargs={"status": ActivityStatus.SUCCEEDED, "progress": 1.0})
    timer.start()
    try:
        assert sensor.execute(context) is None  # no TaskDeferred
    finally:
        timer.join()


def test_run_sensor_waits_on_the_runs_activity(aml_conn: str, workspace: Workspace, context) -> None:
    run = workspace.experiment("e").start_logging()
    workspace.store.create_activity(workspace.name, kind="run", target_id=run.id, activity_id=run.id)
    sensor = AmlRunSensor(task_id="s", run_id=run.id, aml_conn_id=aml_conn, poke_interval=1, timeout=30)
    run.complete()
    sensor.execute(context)
    assert context["ti"].xcom["_link_AmlRunLink"].endswith(run.id)
