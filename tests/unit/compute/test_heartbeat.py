"""A run's supervisor beats; a run whose supervisor went quiet is Failed "lost its compute".

The supervisor is killed for real (SIGKILL, as the OOM killer or a reboot would). Waiters on the
same machine notice a dead process at once (``tests/unit/test_runs.py``); what the heartbeat adds
is the other cases, a supervisor on another machine or a pid that cannot be trusted after a
reboot, which these tests stand for by making the local target unable to tell (``None``).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_aml.compute.heartbeat import Heartbeat
from airflow_aml.compute.local import LocalComputeTarget
from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.exceptions import AuthorizationError, RunFailedError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.store.sql import SqlStore
from airflow_aml.workspace import Workspace
from tests.unit.store.helpers import WS, new_workspace
from tests.unit.test_runs import _supervisor_pid

SLEEPER = RunConfiguration(script="train.py", arguments=("--sleep", "60"))


@pytest.fixture
def fast_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AML_RUN_HEARTBEAT_SECONDS", "0.3")  # inherited by the supervisors started
    monkeypatch.setenv("AML_RUN_LOST_AFTER_SECONDS", "3")


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local target cannot tell whether the supervisor runs (another host, after a reboot)."""
    monkeypatch.setattr(LocalComputeTarget, "worker_alive", lambda self, record: None)


# ------------------------------------------------------------------ the store
def test_beats_stamp_the_run_and_its_unfinished_children(store: SqlStore) -> None:
    new_workspace(store)
    parent = store.create_run(workspace=WS, experiment="e", submitted_by="a", compute_target="local")
    child = store.create_run(workspace=WS, experiment="e", submitted_by="a", parent_run_id=parent.run_id)
    done = store.create_run(workspace=WS, experiment="e", submitted_by="a", parent_run_id=parent.run_id)
    store.update_run_status(done.run_id, RunStatus.COMPLETED)
    interactive = store.create_run(workspace=WS, experiment="e", submitted_by="a")
    assert parent.heartbeat_at == parent.created_at and interactive.heartbeat_at is None  # clock starts at submit

    store.beat_run_heartbeat(parent.run_id)
    after = {r: store.get_run(r).heartbeat_at for r in (parent.run_id, child.run_id, done.run_id)}
    assert after[parent.run_id] is not None and after[parent.run_id] > parent.created_at
    assert after[child.run_id] == after[parent.run_id] and after[done.run_id] is None

    future = datetime.now(UTC) + timedelta(seconds=5)
    assert [r.run_id for r in store.find_runs_without_heartbeat(WS, since=future)] == [parent.run_id]
    assert store.find_runs_without_heartbeat(WS, since=datetime.now(UTC) - timedelta(seconds=60)) == []
    store.update_run_status(parent.run_id, RunStatus.FAILED, error="x")
    store.beat_run_heartbeat(parent.run_id)  # an ended run is not stamped, nor listed
    assert store.get_run(parent.run_id).heartbeat_at == after[parent.run_id]
    assert store.find_runs_without_heartbeat(WS, since=future) == []


def test_a_store_hiccup_does_not_stop_the_beat() -> None:
    class Flaky:
        calls = 0

        def beat_run_heartbeat(self, run_id: str) -> None:
            Flaky.calls += 1
            if Flaky.calls == 2:
                raise OSError("database is locked")

    with Heartbeat(Flaky(), "r", interval=0.05) as beat:  # type: ignore[arg-type]
        time.sleep(0.4)
    assert Flaky.calls >= 4 and beat.beats == Flaky.calls - 1


# ------------------------------------------------------------------ real supervisors
def test_a_waiter_elsewhere_fails_a_run_whose_supervisor_went_quiet(
    workspace: Workspace, script_dir: Path, fast_beats: None, elsewhere: None
) -> None:
    run = workspace.experiment("e").submit(script_dir, SLEEPER)
    pid = _supervisor_pid(run)
    time.sleep(1.0)
    assert run.record.heartbeat_at is not None
    assert (datetime.now(UTC) - run.record.heartbeat_at).total_seconds() < 1.5  # beating every 0.3 s
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RunFailedError, match="lost its compute: its supervisor sent no heartbeat for"):
        run.wait_for_completion(timeout=60, poll_interval=0.2)
    assert 2.0 < time.monotonic() - started < 20  # after the 3 s limit, not before, not for ever
    activity = workspace.get_activity(run.id)
    assert activity.status is ActivityStatus.FAILED and "no heartbeat" in (activity.error or "")


def test_reap_fails_only_the_quiet_runs(
    workspace: Workspace, script_dir: Path, fast_beats: None, elsewhere: None
) -> None:
    quiet = workspace.experiment("e").submit(script_dir, SLEEPER)
    beating = workspace.experiment("e").submit(script_dir, SLEEPER)
    os.kill(_supervisor_pid(quiet), signal.SIGKILL)
    _supervisor_pid(beating)
    interactive = workspace.experiment("e").start_logging()  # nothing beats for it: never reaped
    time.sleep(3.5)
    try:
        assert workspace.reap_lost_runs() == [quiet.id]
        assert quiet.status is RunStatus.FAILED and "lost its compute" in (quiet.record.error or "")
        assert beating.status is RunStatus.RUNNING and interactive.status is RunStatus.RUNNING
        assert workspace.reap_lost_runs() == []  # idempotent
    finally:
        beating.cancel()
        beating.wait_for_completion(timeout=60, raise_on_error=False)
        interactive.complete()


def test_reap_leaves_a_run_whose_process_runs_here(
    workspace: Workspace, script_dir: Path, fast_beats: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = workspace.experiment("e").submit(script_dir, SLEEPER)
    _supervisor_pid(run)
    try:
        # A store that lagged: the heartbeat looks old, but the supervisor is seen alive here.
        assert workspace.reap_lost_runs(lost_after=1e-3) == [] and run.status is RunStatus.RUNNING
    finally:
        run.cancel()
        run.wait_for_completion(timeout=60, raise_on_error=False)


def test_a_reader_may_not_reap(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace.assign_role("rita", "Reader")
    reader = Workspace.get("ws", store_uri=workspace.store_uri, principal="rita")
    with pytest.raises(AuthorizationError):
        reader.reap_lost_runs()
