"""Datastores and compute targets of the SQL store."""

from __future__ import annotations

import math

import pytest

from airflow_aml.exceptions import (
    AlreadyExistsError,
    ComputeTargetNotFoundError,
    ConflictError,
    DatastoreNotFoundError,
    ValidationError,
    WorkspaceNotFoundError,
)
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace, refusal


def test_first_datastore_becomes_default(store: SqlStore) -> None:
    new_workspace(store)
    first = store.register_datastore(WS, "files", kind="nfs", config={"root": "/data"})
    second = store.register_datastore(WS, "blob", kind="azure_blob", config={"container": "c"})
    assert first.is_default and not second.is_default
    assert_utc(first)
    assert store.get_workspace(WS).default_datastore == "files"
    assert [(d.name, d.is_default) for d in store.list_datastores(WS)] == [("blob", False), ("files", True)]


def test_named_default_datastore(store: SqlStore) -> None:
    new_workspace(store, default_datastore="workspacefiles")
    other = store.register_datastore(WS, "other", kind="local", config={})
    named = store.register_datastore(WS, "workspacefiles", kind="nfs", config={"root": "/x"})
    assert not other.is_default and named.is_default
    store.set_default_datastore(WS, "other")
    assert store.get_datastore(WS, "other").is_default
    assert not store.get_datastore(WS, "workspacefiles").is_default


def test_register_datastore_overwrite(store: SqlStore) -> None:
    new_workspace(store)
    original = store.register_datastore(WS, "files", kind="nfs", config={"root": "/a", "n": [1, 2]})
    assert store.get_datastore(WS, "files") == original
    before = dump_tables(store)
    with pytest.raises(AlreadyExistsError, match="Datastore 'files' already exists in workspace 'ws'"):
        store.register_datastore(WS, "files", kind="nfs", config={"root": "/b"})
    assert dump_tables(store) == before
    replaced = store.register_datastore(WS, "files", kind="azure_blob", config={"c": "x"}, overwrite=True)
    assert (replaced.kind, replaced.config, replaced.is_default) == ("azure_blob", {"c": "x"}, True)
    assert store.get_datastore(WS, "files") == replaced


def test_delete_datastore(store: SqlStore) -> None:
    new_workspace(store)
    store.register_datastore(WS, "files", kind="local", config={})
    store.register_datastore(WS, "blob", kind="local", config={})
    before = dump_tables(store)
    with pytest.raises(ConflictError, match="Datastore 'files' is the default datastore of workspace 'ws'"):
        store.delete_datastore(WS, "files")
    assert dump_tables(store) == before
    store.delete_datastore(WS, "blob")
    assert [d.name for d in store.list_datastores(WS)] == ["files"]
    with pytest.raises(DatastoreNotFoundError, match="Datastore 'blob' not found in workspace 'ws'"):
        store.delete_datastore(WS, "blob")


def test_datastore_errors(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(DatastoreNotFoundError, match="Datastore 'x' not found in workspace 'ws'"):
        store.get_datastore(WS, "x")
    with pytest.raises(DatastoreNotFoundError):
        store.set_default_datastore(WS, "x")
    with pytest.raises(ValidationError, match=refusal(store, "datastore 'bad'")):
        store.register_datastore(WS, "bad", kind="local", config={"obj": object()})
    for call in (
        lambda: store.register_datastore("other", "d", kind="local", config={}),
        lambda: store.get_datastore("other", "d"),
        lambda: store.list_datastores("other"),
        lambda: store.delete_datastore("other", "d"),
        lambda: store.set_default_datastore("other", "d"),
    ):
        with pytest.raises(WorkspaceNotFoundError, match="Workspace 'other' not found"):
            call()
    assert store.list_datastores(WS) == []
    assert store.get_workspace(WS).default_datastore == ""


def test_compute_targets(store: SqlStore) -> None:
    new_workspace(store)
    local = store.register_compute_target(WS, "local", kind="local", config={"cores": 2, "inf": math.inf})
    assert_utc(local)
    assert local.config == {"cores": 2, "inf": math.inf}
    store.register_compute_target(WS, "docker", kind="docker", config={"image": "python:3.11"})
    assert store.get_compute_target(WS, "local") == local
    assert [t.name for t in store.list_compute_targets(WS)] == ["docker", "local"]
    with pytest.raises(AlreadyExistsError, match="Compute target 'local' already exists in workspace 'ws'"):
        store.register_compute_target(WS, "local", kind="local", config={})
    replaced = store.register_compute_target(WS, "local", kind="spark", config={}, overwrite=True)
    assert (replaced.kind, replaced.config) == ("spark", {})
    store.delete_compute_target(WS, "docker")
    assert [t.name for t in store.list_compute_targets(WS)] == ["local"]


def test_compute_target_errors(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(ComputeTargetNotFoundError, match="Compute target 'gpu' not found in workspace 'ws'"):
        store.get_compute_target(WS, "gpu")
    with pytest.raises(ComputeTargetNotFoundError):
        store.delete_compute_target(WS, "gpu")
    for call in (
        lambda: store.register_compute_target("other", "c", kind="local", config={}),
        lambda: store.get_compute_target("other", "c"),
        lambda: store.list_compute_targets("other"),
        lambda: store.delete_compute_target("other", "c"),
    ):
        with pytest.raises(WorkspaceNotFoundError):
            call()
