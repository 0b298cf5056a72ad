"""The SDK's run handle: waiting notices a run whose supervisor is gone, and fails it at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from airflow_aml.compute.local import PROP_PID
from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.exceptions import RunFailedError, WaitTimeoutError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.runs import Run
from airflow_aml.workspace import Workspace


def _supervisor_pid(run: Run) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = run.record.properties.get(PROP_PID)
        if pid and run.status is RunStatus.RUNNING:
            return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"run {run.id} did not start: {run.record}")


def test_a_killed_supervisor_fails_the_run_instead_of_a_wait_forever(workspace: Workspace, script_dir: Path) -> None:
    config = RunConfiguration(script="train.py", arguments=("--sleep", "60"))
    run = workspace.experiment("e").submit(script_dir, config)
    os.kill(_supervisor_pid(run), signal.SIGKILL)  # as OOM or a reboot would
    started = time.monotonic()
    with pytest.raises(RunFailedError, match="lost its compute"):
        run.wait_for_completion(timeout=120, poll_interval=0.1)
    assert time.monotonic() - started < 30
    assert run.status is RunStatus.FAILED
    activity = workspace.get_activity(run.id)
    assert activity.status is ActivityStatus.FAILED and "no longer running" in (activity.error or "")
    # The orphaned script is not ours to keep: cancel stops nothing more, the run stays Failed.
    run.cancel()
    assert run.status is RunStatus.FAILED


def test_a_sweep_child_is_watched_through_its_parents_supervisor(workspace: Workspace, script_dir: Path) -> None:
    config = RunConfiguration(script="train.py", arguments=("--sleep", "60"),
                              sweep={"grid": {"C": [0.1]}, "max_concurrent": 1})
    parent = workspace.experiment("e").submit(script_dir, config)
    pid = _supervisor_pid(parent)
    deadline = time.monotonic() + 60
    while not parent.get_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    [child] = parent.get_children()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RunFailedError, match="lost its compute"):
        child.wait_for_completion(timeout=60, poll_interval=0.1)
    assert parent.status is RunStatus.FAILED  # the whole sweep is recorded lost


def test_wait_streams_a_sweeps_children_and_positions_carry_over(workspace: Workspace, script_dir: Path) -> None:
    config = RunConfiguration(script="train.py", sweep={"grid": {"C": [1, 2]}, "max_concurrent": 2})
    parent = workspace.experiment("e").submit(script_dir, config)
    own: list[str] = []
    children: list[tuple[str, str]] = []
    positions: dict[str, int] = {}
    parent.wait_for_completion(timeout=120, poll_interval=0.1, on_log=lambda chunk: own.append(chunk.text),
                               on_child_log=lambda child, chunk: children.append((child.id, chunk.text)),
                               log_positions=positions)
    by_c = {c.record.tags["sweep.C"]: c.id for c in parent.get_children()}
    for value, child_id in by_c.items():
        text = "".join(t for cid, t in children if cid == child_id)
        assert text.count(f"trained with C {float(value)}") == 1
    assert set(positions) == {parent.id, *by_c.values()} and all(seq > 0 for seq in positions.values())
    assert not any("trained with" in text for text in own)  # the parent's own log is the supervisor's

    # Given the positions (say, in a task resumed after a deferral), nothing is handed over twice ...
    again: list[object] = []
    parent.stream_logs(on_log=again.append, on_child_log=lambda child, chunk: again.append(chunk),
                       log_positions=positions)
    assert again == []
    # ... and without them, everything once.
    fresh: list[str] = []
    parent.stream_logs(on_child_log=lambda child, chunk: fresh.append(chunk.text))
    assert "".join(fresh).count("trained with C") == 2


def test_wait_timeout_leaves_the_run_going(workspace: Workspace, script_dir: Path) -> None:
    run = workspace.experiment("e").submit(script_dir, RunConfiguration(script="train.py", arguments=("--sleep", "30")))
    try:
        with pytest.raises(WaitTimeoutError, match=rf"Run '{run.id}' still"):
            run.wait_for_completion(timeout=0.5, poll_interval=0.1)
        assert not run.status.is_terminal
    finally:
        run.cancel()
        run.wait_for_completion(timeout=60, raise_on_error=False)


def test_canceling_a_sweep_child_cancels_that_child_only(workspace: Workspace, script_dir: Path) -> None:
    config = RunConfiguration(script="train.py", arguments=("--sleep", "60"),
                              sweep={"grid": {"C": [0.1, 1.0]}, "max_concurrent": 2})
    parent = workspace.experiment("e").submit(script_dir, config)
    _supervisor_pid(parent)
    deadline = time.monotonic() + 60
    while len(parent.get_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first, second = parent.get_children()
    while first.status is not RunStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    first.cancel()  # the child has no supervisor of its own: its parent's polls the flag
    first.wait_for_completion(timeout=60, raise_on_error=False)
    assert first.status is RunStatus.CANCELED
    assert not second.status.is_terminal and not parent.status.is_terminal  # the sweep goes on
    parent.cancel()
    parent.wait_for_completion(timeout=60, raise_on_error=False)
    assert parent.status is RunStatus.CANCELED


def test_a_supervisor_started_before_the_rename_is_recognised(workspace: Workspace, tmp_path: Path) -> None:
    """Runs started by an earlier version carry the supervisor's old module name."""
    import subprocess
    import sys

    from airflow_aml.compute.local import PROP_HOST, LocalComputeTarget
    from airflow_aml.processes import this_host

    record = workspace.store.create_run(workspace="ws", experiment="e", submitted_by="alice", compute_target="local")
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m",
                            "airflow_aml.compute.supervisor", "--run-id", record.run_id])
    try:
        workspace.store.add_run_properties(record.run_id, {PROP_PID: str(old.pid), PROP_HOST: this_host()})
        target = LocalComputeTarget(workspace, None)
        assert target.worker_alive(workspace.store.get_run(record.run_id)) is True
    finally:
        old.kill()
        old.wait()
    assert target.worker_alive(workspace.store.get_run(record.run_id)) is False
