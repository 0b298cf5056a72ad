"""Workspaces, experiments, roles and secrets of the SQL store."""

from __future__ import annotations

import threading

import pytest

from airflow_aml.entities import Role
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    ExperimentNotFoundError,
    NotFoundError,
    SecretNotFoundError,
    WorkspaceNotFoundError,
)
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace, sql_only


def test_create_get_list_workspaces(store: SqlStore) -> None:
    created = store.create_workspace("b-ws", description="B", created_by="alice", default_datastore="files")
    store.create_workspace("a-ws", description="A", created_by="bob", default_datastore="")
    assert created.name == "b-ws" and created.description == "B" and created.created_by == "alice"
    assert created.default_datastore == "files" and created.properties == {}
    assert_utc(created)
    assert store.get_workspace("b-ws") == created
    assert [ws.name for ws in store.list_workspaces()] == ["a-ws", "b-ws"]


@sql_only  # a served workspace's local datastore is a folder of the service's machine
def test_create_workspace_with_its_datastore_and_owner_in_one_transaction(store: SqlStore) -> None:
    store.create_workspace("ws", description="", created_by="alice", default_datastore="files",
                           datastore={"kind": "local", "config": {"root": "/data"}}, owner="alice")
    assert store.get_role("ws", "alice") is Role.OWNER
    [datastore] = store.list_datastores("ws")
    assert (datastore.name, datastore.kind, datastore.config, datastore.is_default) == (
        "files", "local", {"root": "/data"}, True)
    before = dump_tables(store)
    with pytest.raises(AlreadyExistsError):  # nothing of a refused creation is written
        store.create_workspace("ws", description="", created_by="bob", default_datastore="other",
                               datastore={"kind": "local", "config": {}}, owner="bob")
    assert dump_tables(store) == before


def test_duplicate_workspace_is_refused(store: SqlStore) -> None:
    new_workspace(store)
    before = dump_tables(store)
    with pytest.raises(AlreadyExistsError, match="Workspace 'ws' already exists"):
        new_workspace(store)
    assert dump_tables(store) == before


def test_unknown_workspace(store: SqlStore) -> None:
    with pytest.raises(WorkspaceNotFoundError, match="Workspace 'nope' not found"):
        store.get_workspace("nope")
    assert store.list_workspaces() == []


def test_get_or_create_experiment(store: SqlStore) -> None:
    new_workspace(store)
    first = store.get_or_create_experiment(WS, "exp")
    assert (first.workspace, first.name) == (WS, "exp")
    assert_utc(first)
    assert store.get_or_create_experiment(WS, "exp") == first
    assert store.get_experiment(WS, "exp") == first
    store.get_or_create_experiment(WS, "another")
    assert [e.name for e in store.list_experiments(WS)] == ["another", "exp"]


def test_get_or_create_experiment_concurrently_returns_one_record(store: SqlStore) -> None:
    new_workspace(store)
    results = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        try:
            barrier.wait()
            results.append(store.get_or_create_experiment(WS, "race"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert [e.name for e in store.list_experiments(WS)] == ["race"]


def test_experiment_errors(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(ExperimentNotFoundError, match="Experiment 'missing' not found in workspace 'ws'"):
        store.get_experiment(WS, "missing")
    with pytest.raises(WorkspaceNotFoundError, match="Workspace 'other'"):
        store.get_or_create_experiment("other", "exp")
    with pytest.raises(WorkspaceNotFoundError):
        store.get_experiment("other", "exp")
    with pytest.raises(WorkspaceNotFoundError):
        store.list_experiments("other")
    assert store.list_experiments(WS) == []


# ----------------------------------------------------------------- roles
def test_assign_replace_list_roles(store: SqlStore) -> None:
    new_workspace(store)
    assignment = store.assign_role(WS, "alice", Role.OWNER)
    assert (assignment.workspace, assignment.principal, assignment.role) == (WS, "alice", Role.OWNER)
    assert_utc(assignment)
    store.assign_role(WS, "bob", Role.READER)
    store.assign_role(WS, "bob", Role.CONTRIBUTOR)  # replaces
    assert store.get_role(WS, "bob") is Role.CONTRIBUTOR
    assert store.get_role(WS, "carol") is None
    assert [(a.principal, a.role) for a in store.list_role_assignments(WS)] == [
        ("alice", Role.OWNER),
        ("bob", Role.CONTRIBUTOR),
    ]
    store.remove_role(WS, "bob")
    assert store.get_role(WS, "bob") is None


@sql_only  # acts as several principals; over HTTP the token is one
def test_last_owner_cannot_be_removed_or_demoted(store: SqlStore) -> None:
    new_workspace(store)
    store.assign_role(WS, "alice", Role.OWNER)
    before = dump_tables(store)
    with pytest.raises(ConflictError, match="last Owner of workspace 'ws'"):
        store.remove_role(WS, "alice")
    with pytest.raises(ConflictError, match="last Owner"):
        store.assign_role(WS, "alice", Role.READER)
    assert dump_tables(store) == before
    store.assign_role(WS, "bob", Role.OWNER)
    store.remove_role(WS, "alice")
    assert [(a.principal, a.role) for a in store.list_role_assignments(WS)] == [("bob", Role.OWNER)]


def test_role_errors(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(NotFoundError, match="Principal 'ghost' has no role in workspace 'ws'"):
        store.remove_role(WS, "ghost")
    for call in (
        lambda: store.assign_role("other", "alice", Role.OWNER),
        lambda: store.remove_role("other", "alice"),
        lambda: store.get_role("other", "alice"),
        lambda: store.list_role_assignments("other"),
    ):
        with pytest.raises(WorkspaceNotFoundError, match="Workspace 'other' not found"):
            call()


# ----------------------------------------------------------------- secrets
@sql_only  # ciphertext is not served: tests/unit/service/test_secrets.py
def test_secrets_roundtrip_raw_bytes(store: SqlStore) -> None:
    new_workspace(store)
    blob = bytes(range(256))
    store.put_secret(WS, "storage-key", blob)
    store.put_secret(WS, "a-token", b"\x00")
    assert store.get_secret(WS, "storage-key") == blob
    store.put_secret(WS, "storage-key", b"rotated")  # overwrite
    assert store.get_secret(WS, "storage-key") == b"rotated"
    assert store.list_secret_names(WS) == ["a-token", "storage-key"]
    store.delete_secret(WS, "a-token")
    assert store.list_secret_names(WS) == ["storage-key"]


@sql_only  # ciphertext is not served: tests/unit/service/test_secrets.py
def test_secret_errors(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(SecretNotFoundError, match="Secret 'nope' not found in workspace 'ws'"):
        store.get_secret(WS, "nope")
    with pytest.raises(SecretNotFoundError, match="Secret 'nope'"):
        store.delete_secret(WS, "nope")
    for call in (
        lambda: store.put_secret("other", "s", b"x"),
        lambda: store.get_secret("other", "s"),
        lambda: store.list_secret_names("other"),
        lambda: store.delete_secret("other", "s"),
    ):
        with pytest.raises(WorkspaceNotFoundError):
            call()
    assert store.list_secret_names(WS) == []


@sql_only  # ciphertext is not served: tests/unit/service/test_secrets.py
def test_secrets_are_per_workspace(store: SqlStore) -> None:
    new_workspace(store, "one")
    new_workspace(store, "two")
    store.put_secret("one", "key", b"1")
    with pytest.raises(SecretNotFoundError):
        store.get_secret("two", "key")
