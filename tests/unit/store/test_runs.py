"""Runs of the SQL store: lifecycle, attributes, idempotency keys."""

from __future__ import annotations

import re

import pytest

from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    RunNotFoundError,
    ValidationError,
    WorkspaceNotFoundError,
)
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace, refusal


def _run(store: SqlStore, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("workspace", WS)
    kwargs.setdefault("experiment", "exp")
    kwargs.setdefault("submitted_by", "alice")
    return store.create_run(**kwargs)  # type: ignore[arg-type]


def test_create_run_defaults(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store)
    assert re.fullmatch(r"[0-9a-f]{32}", run.run_id)
    assert (run.workspace, run.experiment, run.submitted_by) == (WS, "exp", "alice")
    assert run.status is RunStatus.QUEUED
    assert run.start_time is None and run.end_time is None and run.parent_run_id is None
    assert run.run_config == {} and run.tags == {} and run.properties == {} and run.params == {}
    assert not run.cancel_requested
    assert_utc(run)
    assert store.get_run(run.run_id) == run
    # the experiment was created on the fly
    assert [e.name for e in store.list_experiments(WS)] == ["exp"]


def test_create_run_with_everything(store: SqlStore) -> None:
    new_workspace(store)
    parent = _run(store, run_id="parent")
    config = {"script": "train.py", "arguments": ["--lr", 0.1], "nested": {"x": None, "nan": float("inf")}}
    run = _run(
        store,
        run_id="child-1",
        parent_run_id="parent",
        compute_target="local",
        run_config=config,
        display_name="Child",
        tags={"team": "a"},
        properties={"git": "abc"},
        idempotency_key="key-1",
        status=RunStatus.RUNNING,
    )
    assert run.run_id == "child-1" and run.parent_run_id == parent.run_id
    assert run.run_config == config and run.display_name == "Child" and run.compute_target == "local"
    assert run.tags == {"team": "a"} and run.properties == {"git": "abc"}
    assert run.idempotency_key == "key-1"
    assert run.status is RunStatus.RUNNING and run.start_time is not None
    assert store.get_run("child-1") == run


def test_create_run_errors_change_nothing(store: SqlStore) -> None:
    new_workspace(store)
    new_workspace(store, "other")
    _run(store, run_id="r1")
    _run(store, run_id="foreign", workspace="other")
    before = dump_tables(store)
    with pytest.raises(AlreadyExistsError, match="Run 'r1' already exists"):
        _run(store, run_id="r1", experiment="new-exp")
    with pytest.raises(RunNotFoundError, match="Parent run 'ghost' not found in workspace 'ws'"):
        _run(store, parent_run_id="ghost", experiment="new-exp")
    with pytest.raises(RunNotFoundError, match="Parent run 'foreign' not found in workspace 'ws'"):
        _run(store, parent_run_id="foreign", experiment="new-exp")
    with pytest.raises(WorkspaceNotFoundError, match="Workspace 'nope' not found"):
        _run(store, workspace="nope")
    with pytest.raises(ValidationError, match=refusal(store, "Run configuration")):
        _run(store, run_config={"f": object()}, experiment="new-exp")
    assert dump_tables(store) == before


def test_unknown_run_raises_everywhere_and_changes_nothing(store: SqlStore) -> None:
    new_workspace(store)
    _run(store, run_id="known")
    before = dump_tables(store)
    calls = [
        lambda: store.get_run("ghost"),
        lambda: store.update_run_status("ghost", RunStatus.RUNNING),
        lambda: store.request_cancel("ghost"),
        lambda: store.set_snapshot("ghost", "0" * 64),
        lambda: store.set_run_tags("ghost", {"a": "b"}),
        lambda: store.delete_run_tags("ghost", ["a"]),
        lambda: store.add_run_properties("ghost", {"a": "b"}),
        lambda: store.log_params("ghost", {"a": "b"}),
        lambda: store.log_batch("ghost", []),
        lambda: store.get_metrics("ghost"),
        lambda: store.get_latest_scalar_metrics(["known", "ghost"]),
        lambda: store.get_latest_metrics(["known", "ghost"]),
        lambda: store.append_log("ghost", "stdout", "x"),
        lambda: store.read_log("ghost"),
    ]
    for call in calls:
        with pytest.raises(RunNotFoundError, match="Run 'ghost' not found"):
            call()
    assert dump_tables(store) == before


def test_status_transitions_set_times(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store)
    preparing = store.update_run_status(run.run_id, RunStatus.PREPARING)
    assert preparing.status is RunStatus.PREPARING and preparing.start_time is None
    running = store.update_run_status(run.run_id, RunStatus.RUNNING)
    assert running.start_time is not None and running.end_time is None
    again = store.update_run_status(run.run_id, RunStatus.RUNNING)
    assert again.start_time == running.start_time  # not reset
    finalizing = store.update_run_status(run.run_id, RunStatus.FINALIZING)
    assert finalizing.end_time is None
    failed = store.update_run_status(run.run_id, RunStatus.FAILED, error="boom")
    assert failed.status is RunStatus.FAILED and failed.error == "boom"
    assert failed.end_time is not None and failed.end_time >= failed.start_time  # type: ignore[operator]
    assert_utc(failed)
    assert failed.duration_seconds is not None and failed.duration_seconds >= 0


@pytest.mark.parametrize("terminal", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED])
def test_terminal_status_is_final(store: SqlStore, terminal: RunStatus) -> None:
    new_workspace(store)
    run = _run(store, status=RunStatus.RUNNING)
    ended = store.update_run_status(run.run_id, terminal)
    before = dump_tables(store)
    for status in RunStatus:
        assert store.update_run_status(run.run_id, status, error="late") == ended
    assert store.request_cancel(run.run_id) == ended
    assert dump_tables(store) == before


def test_request_cancel(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store, status=RunStatus.RUNNING)
    assert run.start_time is not None
    canceled = store.request_cancel(run.run_id)
    assert canceled.cancel_requested and canceled.status is RunStatus.CANCEL_REQUESTED
    assert canceled.end_time is None
    late = store.update_run_status(run.run_id, RunStatus.RUNNING)  # a runner reporting late
    assert late.status is RunStatus.CANCEL_REQUESTED and late.start_time == run.start_time
    final = store.update_run_status(run.run_id, RunStatus.CANCELED)
    assert final.status is RunStatus.CANCELED and final.cancel_requested and final.end_time is not None


def test_snapshot_and_tags(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store, tags={"a": "1"})
    store.set_snapshot(run.run_id, "f" * 64)
    store.set_run_tags(run.run_id, {"a": "2", "b": "3"})
    store.set_run_tags(run.run_id, {})
    fetched = store.get_run(run.run_id)
    assert fetched.snapshot_sha256 == "f" * 64
    assert fetched.tags == {"a": "2", "b": "3"}


def test_delete_run_tags_all_or_none(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store, tags={"a": "1", "b": "2", "c": "3"})
    store.log_params(run.run_id, {"a": "param"})  # a param of the same key is not a tag
    before = dump_tables(store)
    with pytest.raises(NotFoundError, match="has no tag 'x'"):
        store.delete_run_tags(run.run_id, ["a", "x"])
    assert dump_tables(store) == before
    store.delete_run_tags(run.run_id, ["a", "b"])
    store.delete_run_tags(run.run_id, [])
    fetched = store.get_run(run.run_id)
    assert fetched.tags == {"c": "3"} and fetched.params == {"a": "param"}


def test_properties_are_immutable(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store, properties={"git": "abc"})
    store.add_run_properties(run.run_id, {"git": "abc", "azureml.runsource": "script"})  # same value: fine
    before = dump_tables(store)
    with pytest.raises(ConflictError, match="Property 'git' of run '.*' is already 'abc'"):
        store.add_run_properties(run.run_id, {"new": "x", "git": "def"})
    assert dump_tables(store) == before  # "new" was not written either
    assert store.get_run(run.run_id).properties == {"git": "abc", "azureml.runsource": "script"}


def test_params_are_immutable(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store)
    store.log_params(run.run_id, {"lr": "0.1", "epochs": "3"})
    store.log_params(run.run_id, {"lr": "0.1"})
    with pytest.raises(ConflictError, match="Param 'lr' of run"):
        store.log_params(run.run_id, {"lr": "0.2"})
    fetched = store.get_run(run.run_id)
    assert fetched.params == {"lr": "0.1", "epochs": "3"}
    assert fetched.properties == {} and fetched.tags == {}  # kinds do not mix


def test_find_run_by_idempotency_key(store: SqlStore) -> None:
    new_workspace(store)
    new_workspace(store, "other")
    first = _run(store, idempotency_key="k")
    _run(store, idempotency_key="other-key")
    second = _run(store, idempotency_key="k")
    _run(store, workspace="other", idempotency_key="k")
    assert [r.run_id for r in store.find_run_by_idempotency_key(WS, "k")] == [second.run_id, first.run_id]
    assert store.find_run_by_idempotency_key(WS, "missing") == []
    with pytest.raises(WorkspaceNotFoundError):
        store.find_run_by_idempotency_key("nope", "k")


def test_cancel_before_start_still_records_start_time(store: SqlStore) -> None:
    new_workspace(store)
    run = _run(store)
    store.request_cancel(run.run_id)
    started = store.update_run_status(run.run_id, RunStatus.RUNNING)
    assert started.status is RunStatus.CANCEL_REQUESTED and started.start_time is not None
    assert store.update_run_status(run.run_id, RunStatus.COMPLETED).status is RunStatus.COMPLETED
