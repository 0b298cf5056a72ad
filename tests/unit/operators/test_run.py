from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_aml.entities import RunStatus
from airflow_aml.operators.base import idempotency_key
from airflow_aml.operators.run import AmlSubmitRunOperator
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds
from airflow_aml.workspace import Workspace
from tests.unit.conftest import make_context


def _op(aml_conn: str, script_dir: Path, **kwargs: Any) -> AmlSubmitRunOperator:
    defaults: dict[str, Any] = {
        "task_id": "train", "experiment_name": "exp", "source_directory": str(script_dir), "script": "train.py",
        "aml_conn_id": aml_conn, "poll_interval": 0.2,
    }
    return AmlSubmitRunOperator(**{**defaults, **kwargs})


def _runs(workspace: Workspace) -> list:
    return workspace.experiment("exp").get_runs(include_children=True)


def test_idempotency_key_is_stable_per_task_instance() -> None:
    a, b = make_context(), make_context()
    assert idempotency_key(a) == idempotency_key(b)
    assert idempotency_key(a) != idempotency_key(make_context(map_index=3))
    assert idempotency_key(a) != idempotency_key(make_context(run_id="manual__2"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"script": None}, "exactly one of run_config= or script="),
        ({"run_config": {"script": "train.py"}}, "exactly one of run_config= or script="),
        ({"source_directory": "/no/such/dir"}, "source_directory '/no/such/dir' does not exist"),
        ({"script": None, "run_config": {"scirpt": "train.py"}}, "unknown field 'scirpt'"),
        ({"compute_target": "gpu-cluster"}, "gpu-cluster"),
        ({"script": "missing.py"}, "missing.py"),
        ({"sweep": {"grid": {}}}, "at least one"),
    ],
)
def test_bad_input_fails_at_once_and_creates_nothing(
    aml_conn: str, script_dir: Path, workspace: Workspace, context: dict, kwargs: dict, message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        _op(aml_conn, script_dir, **kwargs).execute(context)
    assert _runs(workspace) == []


def test_yaml_run_config_relative_to_source(aml_conn: str, script_dir: Path, workspace: Workspace, context) -> None:
    (script_dir / "job.yml").write_text("script: train.py\narguments: ['--C', '2']\n")
    run_id = _op(aml_conn, script_dir, script=None, run_config="job.yml").execute(context)
    assert workspace.get_run(run_id).get_metrics()["accuracy"] == pytest.approx(0.7)


def test_waits_streams_logs_and_returns_the_run_id(
    aml_conn: str, script_dir: Path, workspace: Workspace, context, capsys
) -> None:
    run_id = _op(aml_conn, script_dir, arguments=["--C", "3"], tags={"team": "ml"}).execute(context)
    run = workspace.get_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.record.tags["team"] == "ml"
    ti = context["ti"]
    assert {key: run.record.properties[key] for key in ("airflow.dag_id", "airflow.run_id", "airflow.map_index")} == {
        "airflow.dag_id": ti.dag_id, "airflow.run_id": ti.run_id, "airflow.map_index": str(ti.map_index)}
    output = capsys.readouterr()
    assert "[stdout] trained with C 3.0" in output.out + output.err  # the script's log, in the task log
    assert context["ti"].xcom["_link_AmlRunLink"].endswith(f"/workspaces/ws/runs/{run_id}")


def test_no_wait_returns_at_once(aml_conn: str, script_dir: Path, workspace: Workspace, context) -> None:
    run_id = _op(aml_conn, script_dir, wait_for_completion=False, arguments=["--sleep", "1"]).execute(context)
    assert not workspace.get_run(run_id).status.is_terminal
    workspace.get_run(run_id).wait_for_completion(poll_interval=0.2)


def test_deferrable_defers_to_the_activity_trigger(aml_conn: str, script_dir: Path, workspace: Workspace,
                                                   context, capsys) -> None:
    op = _op(aml_conn, script_dir, deferrable=True, defer_after=0, timeout=600, arguments=["--sleep", "1"])
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AmlActivityTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.settle == settle_seconds() == 15.0  # the race's guard goes with every deferral
    run_id = trigger.activity_id
    assert trigger.end_time is not None and trigger.end_time > time.time() + 500
    positions = deferred.value.kwargs["log_positions"]
    assert positions == {}  # nothing of the log shown yet: the resumed task shows it all
    workspace.get_run(run_id).wait_for_completion(poll_interval=0.2)
    capsys.readouterr()
    event = {"status": "success", "message": "ok", "target_id": run_id, "activity_id": run_id}
    assert op.execute_complete(context, event, log_positions=positions) == run_id
    output = capsys.readouterr()
    assert (output.out + output.err).count("[stdout] trained with C 1.0") == 1
    with pytest.raises(AirflowException, match="boom"):
        op.execute_complete(context, {"status": "error", "message": "boom", "target_id": run_id})


def test_deferrable_run_that_ends_within_defer_after_never_defers(
    aml_conn: str, script_dir: Path, workspace: Workspace, context, capsys
) -> None:
    op = _op(aml_conn, script_dir, deferrable=True, defer_after=120, timeout=600, arguments=["--sleep", "0.5"])
    run_id = op.execute(context)  # no TaskDeferred: the run ended while the task waited
    assert workspace.get_run(run_id).status is RunStatus.COMPLETED
    output = capsys.readouterr()
    assert (output.out + output.err).count("[stdout] trained with C 1.0") == 1


def test_resumed_task_shows_only_what_the_task_log_did_not_show_before_deferring(
    aml_conn: str, script_dir: Path, workspace: Workspace, context, capsys
) -> None:
    op = _op(aml_conn, script_dir, deferrable=True, defer_after=0, timeout=600)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    run = workspace.get_run(deferred.value.trigger.activity_id)
    run.wait_for_completion(poll_interval=0.2)
    positions: dict[str, int] = {}
    run.stream_logs(on_log=lambda chunk: None, log_positions=positions)  # as if shown before deferring
    assert positions[run.id] > 0
    capsys.readouterr()
    event = {"status": "success", "message": "ok", "target_id": run.id, "activity_id": run.id}
    assert op.execute_complete(context, event, log_positions=positions) == run.id
    output = capsys.readouterr()
    assert "trained with C" not in output.out + output.err
    assert f"Run {run.id} completed; metrics: {{'accuracy': 0.6}}" in output.out + output.err


def test_sweep_streams_each_child_and_ends_with_the_children_and_the_best(
    aml_conn: str, script_dir: Path, workspace: Workspace, context, capsys
) -> None:
    run_id = _op(aml_conn, script_dir, sweep={"grid": {"C": [1, 3]}}, primary_metric="accuracy").execute(context)
    children = {c.record.tags["sweep.C"]: c.id for c in workspace.get_run(run_id).get_children()}
    output = capsys.readouterr()
    text = output.out + output.err
    for value, child_id in children.items():
        assert text.count(f"[{child_id} C={value}] [stdout] trained with C {float(value)}") == 1
    assert f"Sweep {run_id}: 2 child runs" in text
    assert re.search(rf"{children['3']} C=3\s+Completed\s+0\.8\b", text)
    assert f"Best child by accuracy (maximize): {children['3']} C=3; metrics: {{'accuracy': 0.8}}" in text
    assert "metrics: {}" not in text


def test_sweep_without_a_primary_metric_says_how_to_name_the_best(
    aml_conn: str, script_dir: Path, workspace: Workspace, context, capsys
) -> None:
    _op(aml_conn, script_dir, sweep={"grid": {"C": [1]}}).execute(context)
    output = capsys.readouterr()
    assert "Set primary_metric= to name the best child run" in output.out + output.err


def test_unknown_goal_fails_at_once(aml_conn: str, script_dir: Path, workspace: Workspace, context) -> None:
    with pytest.raises(AirflowFailException, match="goal must be one of"):
        _op(aml_conn, script_dir, goal="best").execute(context)
    assert _runs(workspace) == []


def test_failed_run_fails_the_task_and_retry_starts_a_linked_attempt(
    aml_conn: str, script_dir: Path, workspace: Workspace, context
) -> None:
    (script_dir / "bad.py").write_text("raise SystemExit('bad data')\n")
    op = _op(aml_conn, script_dir, script="bad.py")
    with pytest.raises(AirflowException, match="Failed"):
        op.execute(context)
    with pytest.raises(AirflowException, match="Failed"):
        op.execute(context)
    runs = _runs(workspace)
    assert len(runs) == 2
    newest, oldest = runs
    assert newest.record.properties["previous_attempt"] == oldest.id
    assert newest.record.tags["airflow.attempt"] == "2"


def test_retry_of_a_completed_task_returns_the_same_run(aml_conn: str, script_dir: Path, workspace: Workspace,
                                                       context) -> None:
    first = _op(aml_conn, script_dir).execute(context)
    assert _op(aml_conn, script_dir).execute(context) == first
    assert len(_runs(workspace)) == 1
    other = _op(aml_conn, script_dir, reuse_completed_run=False).execute(context)
    assert other != first


def test_on_kill_cancels_the_run(aml_conn: str, script_dir: Path, workspace: Workspace, context) -> None:
    op = _op(aml_conn, script_dir, wait_for_completion=False, arguments=["--sleep", "30"])
    run_id = op.execute(context)
    op.on_kill()
    run = workspace.get_run(run_id)
    run.wait_for_completion(raise_on_error=False, timeout=60, poll_interval=0.2)
    assert run.status is RunStatus.CANCELED


def _execute_in_child(conn_env: dict[str, str], script_dir: str, queue: Any) -> None:
    os.environ.update(conn_env)
    op = AmlSubmitRunOperator(
        task_id="train", experiment_name="exp", source_directory=script_dir, script="train.py",
        arguments=["--sleep", "4"], aml_conn_id="aml_test", poll_interval=0.2,
    )
    context = make_context()
    queue.put("started")
    op.execute(context)


def test_killed_task_retried_reattaches_to_the_one_run(
    aml_conn: str, script_dir: Path, workspace: Workspace, context
) -> None:
    """A worker dies (SIGKILL) while the task waits; the retry finds the same run and one model."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW", "AML_"))}
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_execute_in_child, args=(env, str(script_dir), queue))
    child.start()
    assert queue.get(timeout=60) == "started"
    deadline = time.monotonic() + 60
    while not _runs(workspace) or _runs(workspace)[0].status is not RunStatus.RUNNING:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()

    retry_id = _op(aml_conn, script_dir, arguments=["--sleep", "4"]).execute(context)
    runs = _runs(workspace)
    assert [r.id for r in runs] == [retry_id]
    assert runs[0].status is RunStatus.COMPLETED

    from airflow_aml.operators.model import AmlRegisterModelOperator

    register = AmlRegisterModelOperator(task_id="register", model_name="m", run_id=retry_id, aml_conn_id=aml_conn)
    register_context = make_context(task_id="register")
    first = register.execute(register_context)
    again = register.execute(register_context)
    assert first == again
    assert [m.version for m in workspace.list_models(name="m")] == [1]
