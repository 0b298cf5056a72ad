"""The one waiter: progress as it changes, a deadline, and a worker that died ending the wait."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_aml.activities import (
    RUN_ACTIVITY_STATUS,
    ActivityWaiter,
    WorkerCheck,
    activity_status_for_run,
    describe,
    wait_for_activity,
)
from airflow_aml.entities import ActivityRecord, ActivityStatus, RunStatus
from airflow_aml.exceptions import ActivityNotFoundError, AmlError, WaitTimeoutError
from airflow_aml.workspace import Workspace


def test_status_map() -> None:
    assert set(RUN_ACTIVITY_STATUS) == {s for s in RunStatus if s.is_terminal}
    assert activity_status_for_run(RunStatus.QUEUED) is ActivityStatus.NOT_STARTED
    assert activity_status_for_run(RunStatus.FINALIZING) is ActivityStatus.RUNNING
    assert activity_status_for_run(RunStatus.CANCELED) is ActivityStatus.CANCELED


def test_wait_reports_each_change_once_and_returns_the_end(workspace: Workspace) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="image_build", target_id="x:1")
    seen: list[tuple[str, float, str]] = []

    def work() -> None:
        for fraction in (0.25, 0.5):
            time.sleep(0.1)
            workspace.store.update_activity(activity.activity_id, status=ActivityStatus.RUNNING,
                                            progress=fraction, message=f"step {fraction}")
        time.sleep(0.1)
        workspace.store.update_activity(activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                                        message="done")

    thread = threading.Thread(target=work)
    thread.start()
    final = wait_for_activity(workspace, activity.activity_id, poll_interval=0.02, timeout=30,
                              on_progress=lambda a: seen.append((a.status.value, a.progress, a.message)))
    thread.join()
    assert final.status is ActivityStatus.SUCCEEDED
    assert seen == [("NotStarted", 0.0, ""), ("Running", 0.25, "step 0.25"), ("Running", 0.5, "step 0.5"),
                    ("Succeeded", 1.0, "done")]
    assert describe(final) == "x:1: Succeeded 100% done"


def test_timeout_is_a_wait_timeout_error(workspace: Workspace) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match="still NotStarted after 0.2 s") as caught:
        wait_for_activity(workspace, activity.activity_id, timeout=0.2, poll_interval=0.05)
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, AmlError)
    assert caught.value.activity_id == activity.activity_id


def test_a_dead_worker_ends_the_wait_at_once(workspace: Workspace) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")
    lost: list[str] = []
    check = WorkerCheck(alive=lambda: False, abandon=lambda a, reason: lost.append(reason), where="pid 42 on h")
    started = time.monotonic()
    final = wait_for_activity(workspace, activity.activity_id, timeout=60, poll_interval=0.05, worker=check)
    assert time.monotonic() - started < 5
    assert final.status is ActivityStatus.FAILED
    assert final.error == lost[0] == "pid 42 on h is no longer running; it ended before run r did"


def test_grace_and_unknown_liveness(workspace: Workspace) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")
    unknown = ActivityWaiter(workspace, activity.activity_id, worker=WorkerCheck(alive=lambda: None))
    assert not unknown.poll().status.is_terminal  # another host: cannot tell, keep waiting
    waiter = ActivityWaiter(workspace, activity.activity_id, worker=WorkerCheck(alive=lambda: False, grace=0.3))
    assert not waiter.poll().status.is_terminal  # dead, but within its grace
    time.sleep(0.35)
    assert waiter.poll().status is ActivityStatus.FAILED


def test_an_activity_that_ended_while_its_worker_exited_is_not_failed(workspace: Workspace) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")

    def exited() -> bool:  # the worker recorded the end, then exited, between the waiter's reads
        workspace.store.update_activity(activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0)
        return False

    record: ActivityRecord = ActivityWaiter(workspace, activity.activity_id, worker=WorkerCheck(alive=exited)).poll()
    assert record.status is ActivityStatus.SUCCEEDED


def test_a_reader_learns_of_a_lost_worker_without_writing(workspace: Workspace, store_uri: str) -> None:
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")
    workspace.assign_role("bob", "Reader")
    bob = Workspace.get("ws", store_uri=store_uri, principal="bob")
    with pytest.raises(AmlError, match="is no longer running"):
        ActivityWaiter(bob, activity.activity_id, worker=WorkerCheck(alive=lambda: False)).wait(timeout=5)
    assert workspace.get_activity(activity.activity_id).status is ActivityStatus.NOT_STARTED


def test_activities_of_another_workspace_are_not_found(workspace: Workspace, store_uri: str, tmp_path) -> None:
    other = Workspace.create("other", store_uri=store_uri, datastore_root=tmp_path / "o")
    activity = other.store.create_activity(other.name, kind="run", target_id="r")
    with pytest.raises(ActivityNotFoundError):
        wait_for_activity(workspace, activity.activity_id, timeout=1)


def test_a_finished_record_settles_its_activity(workspace: Workspace) -> None:
    """The feature's record ended (a run Completed) but its worker died before telling the
    activity: the waiter ends the activity as the record says, never Failed."""
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id="r")
    check = WorkerCheck(alive=lambda: False, ended=lambda: ActivityStatus.SUCCEEDED)
    final = wait_for_activity(workspace, activity.activity_id, timeout=5, poll_interval=0.01, worker=check)
    assert final.status is ActivityStatus.SUCCEEDED and final.progress == 1.0
    unknown = workspace.store.create_activity(workspace.name, kind="run", target_id="r2")
    check = WorkerCheck(alive=lambda: None, ended=lambda: ActivityStatus.CANCELED)  # another host
    assert wait_for_activity(workspace, unknown.activity_id, timeout=5, worker=check).status \
        is ActivityStatus.CANCELED


def test_an_activity_quiet_for_the_grace_counts_for_a_new_waiter(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter made afresh at each look (a rescheduled sensor) has no memory of how long the
    worker looked dead: an activity not updated for the grace period is enough."""
    from airflow_aml import activities

    activity = workspace.store.create_activity(workspace.name, kind="deployment_create", target_id="svc")
    check = WorkerCheck(alive=lambda: False, grace=30)
    assert not ActivityWaiter(workspace, activity.activity_id, worker=check).poll().status.is_terminal
    real = time.time
    monkeypatch.setattr(activities.time, "time", lambda: real() + 31)
    assert ActivityWaiter(workspace, activity.activity_id, worker=check).poll().status is ActivityStatus.FAILED
