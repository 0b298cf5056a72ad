"""The model registry of the SQL store."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy.orm import Session

from airflow_aml.entities import ModelRecord
from airflow_aml.exceptions import ConflictError, ModelNotFoundError, RunNotFoundError, WorkspaceNotFoundError
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace


def _register(store: SqlStore, name: str = "model", **kwargs: Any) -> ModelRecord:
    kwargs.setdefault("path", f"models/{name}")
    kwargs.setdefault("datastore", "files")
    kwargs.setdefault("created_by", "alice")
    return store.create_model_version(kwargs.pop("workspace", WS), name, **kwargs)


def test_versions_increment(store: SqlStore) -> None:
    new_workspace(store)
    run_id = store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id
    first = _register(
        store,
        description="first",
        run_id=run_id,
        sha256="a" * 64,
        tags={"stage": "dev"},
        properties={"framework": "sklearn"},
        idempotency_key="k1",
    )
    assert (first.name, first.version, first.id) == ("model", 1, "model:1")
    assert (first.path, first.datastore, first.created_by, first.description) == (
        "models/model",
        "files",
        "alice",
        "first",
    )
    assert (first.run_id, first.sha256, first.idempotency_key) == (run_id, "a" * 64, "k1")
    assert first.tags == {"stage": "dev"} and first.properties == {"framework": "sklearn"}
    assert_utc(first)
    assert [_register(store).version for _ in range(3)] == [2, 3, 4]
    assert _register(store, "other").version == 1  # per name
    new_workspace(store, "ws2")
    assert _register(store, workspace="ws2").version == 1  # per workspace
    assert store.get_model_version(WS, "model", 1) == first
    assert store.get_model_version(WS, "model").version == 4  # latest


def test_versions_are_never_reused(store: SqlStore) -> None:
    new_workspace(store)
    for _ in range(3):
        _register(store)
    store.delete_model_version(WS, "model", 3)
    assert store.get_model_version(WS, "model").version == 2
    assert _register(store).version == 4
    for version in (1, 2, 4):
        store.delete_model_version(WS, "model", version)
    with pytest.raises(ModelNotFoundError, match="Model 'model' not found in workspace 'ws'"):
        store.get_model_version(WS, "model")
    assert _register(store).version == 5


def test_delete_removes_tags(store: SqlStore) -> None:
    new_workspace(store)
    _register(store, tags={"a": "b"}, properties={"p": "q"})
    store.delete_model_version(WS, "model", 1)
    assert dump_tables(store)["model_attributes"] == []


def test_not_found_errors_change_nothing(store: SqlStore) -> None:
    new_workspace(store)
    _register(store)
    before = dump_tables(store)
    with pytest.raises(ModelNotFoundError, match="Model 'model' version 3 not found in workspace 'ws'"):
        store.get_model_version(WS, "model", 3)
    with pytest.raises(ModelNotFoundError, match="Model 'nope' not found in workspace 'ws'"):
        store.get_model_version(WS, "nope")
    with pytest.raises(ModelNotFoundError, match="Model 'model' version 3 not found"):
        store.set_model_tags(WS, "model", 3, {"a": "b"})
    with pytest.raises(ModelNotFoundError, match="Model 'model' version 3 not found"):
        store.delete_model_version(WS, "model", 3)
    with pytest.raises(RunNotFoundError, match="Run 'ghost' not found"):
        _register(store, run_id="ghost")
    for call in (
        lambda: _register(store, workspace="nope"),
        lambda: store.get_model_version("nope", "model"),
        lambda: store.search_models("nope"),
        lambda: store.set_model_tags("nope", "model", 1, {}),
        lambda: store.delete_model_version("nope", "model", 1),
    ):
        with pytest.raises(WorkspaceNotFoundError, match="Workspace 'nope' not found"):
            call()
    assert dump_tables(store) == before


def test_set_model_tags(store: SqlStore) -> None:
    new_workspace(store)
    _register(store, tags={"stage": "dev", "owner": "a"}, properties={"p": "1"})
    store.set_model_tags(WS, "model", 1, {"stage": "prod", "new": "x"})
    model = store.get_model_version(WS, "model", 1)
    assert model.tags == {"stage": "prod", "owner": "a", "new": "x"}
    assert model.properties == {"p": "1"}


def test_search_models(store: SqlStore) -> None:
    new_workspace(store)
    new_workspace(store, "other")
    _register(store, "a", tags={"stage": "dev"})  # a:1
    _register(store, "a", tags={"stage": "prod"}, idempotency_key="k")  # a:2
    _register(store, "b", tags={"stage": "prod", "gpu": "yes"})  # b:1
    _register(store, "a")  # a:3
    _register(store, "a", workspace="other", tags={"stage": "prod"})

    def ids(**kwargs: Any) -> list[str]:
        return [model.id for model in store.search_models(WS, **kwargs)]

    assert ids() == ["a:3", "b:1", "a:2", "a:1"]  # newest first
    assert ids(name="a") == ["a:3", "a:2", "a:1"]
    assert ids(tags={"stage": "prod"}) == ["b:1", "a:2"]
    assert ids(tags={"stage": "*"}) == ["b:1", "a:2", "a:1"]  # "*": key present
    assert ids(tags={"stage": "prod", "gpu": "*"}) == ["b:1"]  # every tag must match
    assert ids(idempotency_key="k") == ["a:2"]
    assert ids(latest_only=True) == ["a:3", "b:1"]
    # latest among the matching versions
    assert ids(latest_only=True, tags={"stage": "*"}) == ["b:1", "a:2"]
    assert ids(latest_only=True, name="a", tags={"stage": "dev"}) == ["a:1"]
    assert ids(name="missing") == []
    (b1,) = store.search_models(WS, name="b")
    assert b1 == store.get_model_version(WS, "b", 1)


def test_delete_refused_while_in_use(store_uri_store: tuple[str, SqlStore]) -> None:
    _, store = store_uri_store
    new_workspace(store)
    _register(store)
    before = dump_tables(store)
    with pytest.raises(ConflictError, match="Model 'model' version 1 is used by an image in workspace 'ws'"):
        store.delete_model_version(WS, "model", 1)
    assert dump_tables(store) == before


@pytest.fixture
def store_uri_store(sql_store_uri: str) -> Any:
    """A store whose image-registry hook says every model version is in use."""

    class InUseStore(SqlStore):
        def _model_version_in_use(self, session: Session, workspace: str, name: str, version: int) -> bool:
            return True

    store = InUseStore(sql_store_uri)
    yield sql_store_uri, store
    store.close()


def test_concurrent_registrations_get_distinct_versions(store: SqlStore) -> None:
    """Threads sharing one store (one pool); on PostgreSQL this races real transactions."""
    new_workspace(store)
    threads_n, per_thread = 8, 10
    barrier = threading.Barrier(threads_n)
    versions: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def register() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                # a brand-new name for every thread at once: the counter row does not exist yet
                version = _register(store, "contended").version
                with lock:
                    versions.append(version)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == list(range(1, threads_n * per_thread + 1))
    stored = sorted(model.version for model in store.search_models(WS, name="contended"))
    assert stored == list(range(1, threads_n * per_thread + 1))
