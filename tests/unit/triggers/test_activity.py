from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_aml.entities import ActivityStatus
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import MARGIN_SECONDS, settle_seconds
from airflow_aml.workspace import Workspace


def collect(trigger: AmlActivityTrigger, limit: float = 30) -> list[Any]:
    async def _run() -> list[Any]:
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(_run(), limit))


def test_serialize_round_trip() -> None:
    trigger = AmlActivityTrigger(activity_id="a1", aml_conn_id="c", poll_interval=2.5, end_time=123.0, settle=7)
    path, kwargs = trigger.serialize()
    assert path == "airflow_aml.triggers.activity.AmlActivityTrigger"
    assert kwargs == {"activity_id": "a1", "aml_conn_id": "c", "poll_interval": 2.5, "end_time": 123.0,
                      "settle": 7.0}
    assert AmlActivityTrigger(**kwargs).serialize() == (path, kwargs)
    # Left out, the settle time is resolved where the task defers, from [workers] min_heartbeat_interval.
    assert AmlActivityTrigger(activity_id="a1").serialize()[1]["settle"] == settle_seconds() == 15.0


def test_settle_time_follows_the_supervisors_heartbeat_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "2")
    assert settle_seconds() == 2 * 2 + MARGIN_SECONDS


@pytest.mark.parametrize("outcome", [ActivityStatus.SUCCEEDED, ActivityStatus.FAILED])
def test_an_activity_that_ends_at_once_is_reported_only_after_the_settle_time(
    workspace: Workspace, aml_conn: str, outcome: ActivityStatus
) -> None:
    """The race: a trigger that fires while Airflow has not yet seen the deferring process exit
    gets its task failed; so even an activity that already ended is held back."""
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r0")
    workspace.store.update_activity(activity.activity_id, status=outcome, progress=1.0)
    trigger = AmlActivityTrigger(activity_id=activity.activity_id, aml_conn_id=aml_conn, poll_interval=0.05,
                                 settle=1.5)
    started = time.monotonic()
    [event] = collect(trigger)
    assert time.monotonic() - started >= 1.5
    assert event.payload["activity_status"] == outcome.value


def test_a_long_activity_is_reported_at_once_when_it_ends(workspace: Workspace, aml_conn: str) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r0")
    trigger = AmlActivityTrigger(activity_id=activity.activity_id, aml_conn_id=aml_conn, poll_interval=0.05,
                                 settle=0.3)

    async def watch() -> tuple[float, list[Any]]:
        async def finish() -> float:
            await asyncio.sleep(0.8)  # longer than the settle time
            await asyncio.to_thread(workspace.store.update_activity, activity.activity_id,
                                    status=ActivityStatus.SUCCEEDED, progress=1.0)
            return time.monotonic()

        task = asyncio.create_task(finish())
        events = [event async for event in trigger.run()]
        return await task, events

    ended, events = asyncio.run(asyncio.wait_for(watch(), 30))
    assert len(events) == 1 and time.monotonic() - ended < 0.5  # no extra hold


def test_success_after_progress(workspace: Workspace, aml_conn: str) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r1")

    async def finish_later() -> list[Any]:
        trigger = AmlActivityTrigger(activity_id=activity.activity_id, aml_conn_id=aml_conn, poll_interval=0.05,
                                     settle=0)
        events = []

        async def advance() -> None:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(workspace.store.update_activity, activity.activity_id,
                                    status=ActivityStatus.RUNNING, progress=0.5, message="half")
            await asyncio.sleep(0.2)
            await asyncio.to_thread(workspace.store.update_activity, activity.activity_id,
                                    status=ActivityStatus.SUCCEEDED, progress=1.0, message="done")

        task = asyncio.create_task(advance())
        async for event in trigger.run():
            events.append(event)
        await task
        return events

    events = asyncio.run(asyncio.wait_for(finish_later(), 30))
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["activity_status"] == "Succeeded"
    assert payload["target_id"] == "r1"
    assert payload["progress"] == 1.0 and payload["progress_message"] == "done"


def test_failed_activity_is_an_error_event(workspace: Workspace, aml_conn: str) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r2")
    workspace.store.update_activity(activity.activity_id, status=ActivityStatus.FAILED, error="exit code 3")
    [event] = collect(AmlActivityTrigger(activity_id=activity.activity_id, aml_conn_id=aml_conn, settle=0))
    assert event.payload["status"] == "error"
    assert "exit code 3" in event.payload["message"]


def test_deadline_gives_one_timeout_event(workspace: Workspace, aml_conn: str) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r3")
    trigger = AmlActivityTrigger(
        activity_id=activity.activity_id, aml_conn_id=aml_conn, poll_interval=0.05, end_time=time.time() + 0.2,
        settle=0,
    )
    [event] = collect(trigger)
    assert event.payload["status"] == "timeout"
    assert "still NotStarted at the deadline" in event.payload["message"]


def test_unknown_activity_is_one_error_event(workspace: Workspace, aml_conn: str) -> None:
    [event] = collect(AmlActivityTrigger(activity_id="missing", aml_conn_id=aml_conn, settle=0))
    assert event.payload["status"] == "error"
    assert "missing" in event.payload["message"]
