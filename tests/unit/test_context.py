"""The workspace context: every store call checked for the principal, and scoped to its workspace."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from airflow_aml.context import GuardedStore, WorkspaceContext, run_file, run_prefix
from airflow_aml.exceptions import AuthorizationError, NotFoundError, PathEscapeError
from airflow_aml.roles import STORE_ACTIONS, Action, Unavailable, store_action
from airflow_aml.store.base import AbstractStore
from airflow_aml.workspace import Workspace


def test_every_store_method_has_an_action() -> None:
    methods = {name for name, _ in inspect.getmembers(AbstractStore, inspect.isfunction) if not name.startswith("_")}
    assert methods == set(STORE_ACTIONS)


def test_secret_writes_need_manage_except_deployment_keys() -> None:
    assert store_action("put_secret", ("ws", "db-password", b"x"), {}) is Action.MANAGE
    assert store_action("put_secret", ("ws",), {"name": "deployment-svc-primary-key", "ciphertext": b"x"}) \
        is Action.WRITE
    assert store_action("delete_secret", ("ws", "deployment-svc-secondary-key"), {}) is Action.WRITE
    assert store_action("get_secret", ("ws", "deployment-svc-secondary-key"), {}) is Action.READ_SECRETS


def test_the_guard_refuses_before_the_store_is_called(workspace: Workspace, store_uri: str) -> None:
    workspace.assign_role("bob", "Reader")
    run = workspace.experiment("e").start_logging()
    bob = WorkspaceContext.open("ws", store_uri=store_uri, principal="bob")
    assert isinstance(bob.store, GuardedStore)
    assert bob.store.get_run(run.id).run_id == run.id
    with pytest.raises(AuthorizationError, match=r"'bob' \(Reader\) may not write in workspace 'ws'"):
        bob.store.set_run_tags(run.id, {"x": "1"})
    assert workspace.store.get_run(run.id).tags == {}
    nobody = WorkspaceContext.open("ws", store_uri=store_uri, principal="mallory")
    with pytest.raises(AuthorizationError, match="no role"):
        nobody.store.get_run(run.id)


def test_a_handle_acts_on_its_own_workspace_only(workspace: Workspace, store_uri: str, tmp_path: Path) -> None:
    Workspace.create("other", store_uri=store_uri, datastore_root=tmp_path / "other")
    with pytest.raises(AuthorizationError, match="may not act on workspace 'other'"):
        workspace.store.list_experiments("other")
    with pytest.raises(AuthorizationError, match="may not act on workspace 'other'"):
        workspace.store.create_activity(workspace="other", kind="run", target_id="x")


def test_system_calls_are_not_available_through_a_handle(workspace: Workspace) -> None:
    assert store_action("close", (), {}) is Unavailable.SYSTEM
    with pytest.raises(AuthorizationError, match="not available"):
        workspace.store.close()
    with pytest.raises(AttributeError, match="not a metadata store call"):
        workspace.store.engine  # noqa: B018


def test_readers_get_a_read_only_datastore(workspace: Workspace, store_uri: str) -> None:
    workspace.get_default_datastore().write_bytes("a.txt", b"a")
    workspace.assign_role("bob", "Reader")
    bob = WorkspaceContext.open("ws", store_uri=store_uri, principal="bob")
    assert bob.get_default_datastore().read_bytes("a.txt") == b"a"
    with pytest.raises(AuthorizationError):
        bob.get_default_datastore().write_bytes("b.txt", b"b")


def test_run_paths() -> None:
    assert run_prefix("abc") == "runs/abc"
    assert run_file("abc", "outputs/model.pkl") == "runs/abc/outputs/model.pkl"
    with pytest.raises(PathEscapeError):
        run_file("abc", "../../secret")


def test_ids_of_another_workspace_are_refused(workspace: Workspace, store_uri: str, tmp_path: Path) -> None:
    """A Contributor of one workspace cannot reach another's runs or activities by their ids."""
    from airflow_aml.entities import Metric, RunStatus
    from airflow_aml.runs import Run

    other = Workspace.create("other", store_uri=store_uri, datastore_root=tmp_path / "other", principal="eve")
    theirs = workspace.experiment("e").start_logging()
    activity = workspace.store.create_activity("ws", kind="run", target_id=theirs.id)
    calls = [
        lambda: other.store.get_run(theirs.id),
        lambda: other.store.update_run_status(theirs.id, RunStatus.FAILED),
        lambda: other.store.log_batch(theirs.id, [Metric("stolen", 1.0, 0, 0.0)]),
        lambda: other.store.get_latest_scalar_metrics([theirs.id]),
        lambda: other.store.update_activity(activity.activity_id, message="x"),
        lambda: other.store.create_run(workspace="other", experiment="e", submitted_by="eve",
                                       parent_run_id=theirs.id),
        lambda: other.metric_writer(theirs.id).add(Metric("stolen", 1.0, 0, 0.0)),
        lambda: Run(other, theirs.record).log("stolen", 1.0),
        lambda: Run(other, theirs.record).tag("k", "v"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match="not found in workspace 'other'"):
            call()
    theirs.flush()
    assert theirs.status is RunStatus.RUNNING and theirs.get_metrics() == {} and theirs.record.tags == {}


def test_ids_from_this_handle_are_checked_without_another_query(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    found = workspace.experiment("e").search_runs()
    assert [r.id for r in found] == [run.id]
    calls: list[str] = []
    inner = workspace.store._inner  # type: ignore[attr-defined]
    real = inner.get_run
    inner.get_run = lambda run_id: calls.append(run_id) or real(run_id)  # type: ignore[method-assign]
    try:
        workspace.store.get_latest_scalar_metrics([r.id for r in found])
    finally:
        inner.get_run = real  # type: ignore[method-assign]
    assert calls == []
