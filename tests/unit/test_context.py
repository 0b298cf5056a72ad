"""The workspace context: every store call checked for the principal, and scoped to its workspace."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from airflow_aml.context import GuardedStore, WorkspaceContext, run_file, run_prefix
from airflow_aml.exceptions import AuthorizationError, PathEscapeError
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
