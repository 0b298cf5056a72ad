"""Durable execution (``ResumableJobMixin``): the activity id in the task state decides what a
retry of the same task instance does. A shared ``FakeTaskStateStore`` makes two executions two
tries of one task instance, as Airflow's ``task_state_store`` does across tries."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_aml.entities import ImageStatus, RunStatus
from airflow_aml.images.build import execute_build
from airflow_aml.images.worker import PROP_BUILD_HOST, PROP_BUILD_PID, PROP_BUILD_PROCESS
from airflow_aml.operators.base import idempotency_key
from airflow_aml.operators.durable import AmlDurableOperator
from airflow_aml.operators.run import AmlSubmitRunOperator
from airflow_aml.workspace import Workspace
from tests.unit.conftest import FakeTaskStateStore, make_context
from tests.unit.operators.test_image import _op as _image_op
from tests.unit.operators.test_image import detached_builds, fake, source, ws  # noqa: F401 (fixtures)

KEY = AmlDurableOperator.external_id_key


def _run_op(aml_conn: str, script_dir: Path, **kwargs: Any) -> AmlSubmitRunOperator:
    defaults: dict[str, Any] = {
        "task_id": "train", "experiment_name": "exp", "source_directory": str(script_dir), "script": "train.py",
        "aml_conn_id": aml_conn, "poll_interval": 0.2,
    }
    return AmlSubmitRunOperator(**{**defaults, **kwargs})


def _runs(workspace: Workspace) -> list:
    return workspace.experiment("exp").get_runs(include_children=True)


def _log(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


# ---------------------------------------------------------------------- runs
def test_the_run_id_goes_to_the_task_state_and_a_retry_reattaches(
    aml_conn: str, script_dir: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    context = make_context(task_id="train")
    run_id = _run_op(aml_conn, script_dir, arguments=["--sleep", "3"], wait_for_completion=False).execute(context)
    assert context["task_state_store"].values == {KEY: run_id}
    assert not workspace.get_run(run_id).status.is_terminal
    _log(capsys)

    # The next try (the worker that waited crashed): it follows the same run to its end.
    assert _run_op(aml_conn, script_dir, arguments=["--sleep", "3"]).execute(context) == run_id
    log = _log(capsys)
    assert "Reconnecting to existing job" in log and run_id in log
    assert [r.id for r in _runs(workspace)] == [run_id]
    assert workspace.get_run(run_id).status is RunStatus.COMPLETED
    assert "[stdout] trained with C" in log  # the run's log, in the retry's task log


def test_a_retry_after_success_returns_the_run_without_submitting(
    aml_conn: str, script_dir: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    context = make_context(task_id="train")
    first = _run_op(aml_conn, script_dir).execute(context)
    _log(capsys)
    assert _run_op(aml_conn, script_dir).execute(context) == first
    assert "Job already completed successfully" in _log(capsys)
    assert len(_runs(workspace)) == 1
    # Unless the task says a completed run is not its result: the mixin submits, the SDK links.
    again = _run_op(aml_conn, script_dir, reuse_completed_run=False).execute(context)
    assert again != first and context["task_state_store"].values == {KEY: again}
    assert workspace.get_run(again).record.properties["previous_attempt"] == first


def test_a_stored_id_that_no_longer_exists_starts_afresh(
    aml_conn: str, script_dir: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    state = FakeTaskStateStore()
    state.set(KEY, "0123456789abcdef0123456789abcdef")  # a run deleted since, or of another workspace
    context = make_context(task_id="train", task_state=state)
    run_id = _run_op(aml_conn, script_dir).execute(context)
    assert "Prior job in terminal state, resubmitting fresh" in _log(capsys)
    assert state.values == {KEY: run_id} and workspace.get_run(run_id).status is RunStatus.COMPLETED


def test_durable_false_leaves_the_task_state_alone(aml_conn: str, script_dir: Path, workspace: Workspace) -> None:
    context = make_context(task_id="train")
    first = _run_op(aml_conn, script_dir, durable=False).execute(context)
    assert context["task_state_store"].values == {}
    # The idempotency key alone still finds the earlier try's run.
    assert _run_op(aml_conn, script_dir, durable=False).execute(context) == first


def test_without_a_task_state_store_the_idempotency_key_does_the_work(
    aml_conn: str, script_dir: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    context = make_context(task_id="train")
    del context["task_state_store"]  # an Airflow (or a test harness) without task state
    first = _run_op(aml_conn, script_dir).execute(context)
    assert "crash recovery is disabled" in _log(capsys)
    assert _run_op(aml_conn, script_dir).execute(context) == first and len(_runs(workspace)) == 1


# ---------------------------------------------------------------------- images
def test_a_retry_reattaches_to_a_build_in_its_own_process(
    aml_conn: str, ws: Workspace, source: Path, fake, detached_builds: list,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    context = make_context(task_id="build")
    with pytest.raises(TaskDeferred) as deferred:
        _image_op(aml_conn, source, deferrable=True, defer_after=0, timeout=600).execute(context)
    activity_id = deferred.value.trigger.activity_id
    assert context["task_state_store"].values == {KEY: activity_id}
    _log(capsys)

    # The deferred task never resumed (its worker was lost); the retry, not deferrable, waits for
    # the build the detached process finishes.
    [plan] = detached_builds
    threading.Timer(0.5, execute_build, args=(ws, plan)).start()
    result = _image_op(aml_conn, source).execute(context)
    assert result["id"] == "scorer:1"
    assert "Reconnecting to existing job" in _log(capsys)
    assert [i.version for i in ws.list_images(name="scorer")] == [1] and len(fake.calls) == 1


@pytest.mark.parametrize("stored", [True, False], ids=["task-state", "idempotency-key"])
def test_a_retry_after_an_inline_build_died_with_its_worker_builds_the_next_attempt(
    aml_conn: str, ws: Workspace, source: Path, fake, stored: bool,  # noqa: F811
) -> None:
    """Try 1 built in the task and its worker was killed: version 1 stays Building with a dead
    pid. Whether the retry finds it by the task state or by the idempotency key, it is recorded
    Failed and the next attempt builds; nothing waits for the dead build."""
    context = make_context(task_id="build")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = ws.store.create_image_version(
        "ws", "scorer", builder="fake", created_by="alice", model_ids=["m:1"], spec={},
        properties={PROP_BUILD_PID: dead.stdout.strip(), PROP_BUILD_HOST: socket.gethostname(),
                    PROP_BUILD_PROCESS: "inline"},
        idempotency_key=idempotency_key(context), idempotency_attempt=1,
    )
    activity = ws.store.create_activity("ws", kind="image_build", target_id=record.id)
    ws.store.update_image("ws", "scorer", 1, activity_id=activity.activity_id)
    if stored:
        context["task_state_store"].set(KEY, activity.activity_id)

    result = _image_op(aml_conn, source, timeout=60).execute(context)
    assert result["id"] == "scorer:2"
    lost = ws.get_image("scorer", 1)
    assert lost.status is ImageStatus.FAILED and "ended before the build did" in (lost.error or "")
    assert ws.get_image("scorer", 2).status is ImageStatus.SUCCEEDED
    assert context["task_state_store"].values[KEY] == ws.get_image("scorer", 2).record.activity_id

