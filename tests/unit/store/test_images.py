"""The image registry of the SQL store (SQLite and, with AML_TEST_POSTGRES_URI, PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_aml.entities import ImageRecord, ImageStatus, ModelRecord
from airflow_aml.exceptions import (
    ConflictError,
    ImageNotFoundError,
    ModelNotFoundError,
    ValidationError,
    WorkspaceNotFoundError,
)
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace, refusal


def _model(store: SqlStore, name: str = "model", workspace: str = WS) -> ModelRecord:
    return store.create_model_version(workspace, name, path=f"models/{name}", datastore="files", created_by="alice")


def _image(store: SqlStore, name: str = "scorer", models: tuple[str, ...] = ("model:1",), **kwargs: Any) -> ImageRecord:
    kwargs.setdefault("builder", "local")
    kwargs.setdefault("created_by", "alice")
    kwargs.setdefault("spec", {"entry_script": "score.py"})
    return store.create_image_version(kwargs.pop("workspace", WS), name, model_ids=list(models), **kwargs)


@pytest.fixture
def ws(store: SqlStore) -> SqlStore:
    """The store with workspace ``ws`` and model versions model:1, model:2 and other:1."""
    new_workspace(store)
    _model(store)
    _model(store)
    _model(store, "other")
    return store


def test_versions_increment_and_record_everything(ws: SqlStore) -> None:
    store = ws
    first = _image(
        store, models=("model:2", "other:1"), description="first", tags={"stage": "dev"},
        properties={"aml.datastore": "files"}, idempotency_key="k1", spec={"entry_script": "score.py", "pip": ["six"]},
    )
    assert (first.name, first.version, first.id, first.status) == ("scorer", 1, "scorer:1", ImageStatus.BUILDING)
    assert first.model_ids == ["model:2", "other:1"]  # the spec's order
    assert (first.builder, first.created_by, first.description) == ("local", "alice", "first")
    assert first.spec == {"entry_script": "score.py", "pip": ["six"]}
    assert first.tags == {"stage": "dev"} and first.properties == {"aml.datastore": "files"}
    assert (first.digest, first.location, first.error, first.build_log_path, first.build_log_tail) == (
        None, None, None, None, ""
    )
    assert first.idempotency_key == "k1"
    assert_utc(first)
    assert [_image(store).version for _ in range(3)] == [2, 3, 4]
    assert _image(store, "other-image").version == 1  # per name
    new_workspace(store, "ws2")
    _model(store, workspace="ws2")
    assert _image(store, workspace="ws2").version == 1  # per workspace
    assert store.get_image(WS, "scorer", 1) == first
    assert store.get_image(WS, "scorer").version == 4  # latest


def test_update_image(ws: SqlStore) -> None:
    store = ws
    _image(store)
    updated = store.update_image(
        WS, "scorer", 1, digest="d" * 64, location="/bundles/x", build_log_path="images/scorer/1/build.log",
        build_log_tail="done\n", activity_id="act-1", properties={"local.python": "/env/bin/python"},
    )
    assert updated.status is ImageStatus.BUILDING
    assert (updated.digest, updated.location, updated.activity_id) == ("d" * 64, "/bundles/x", "act-1")
    assert (updated.build_log_path, updated.build_log_tail) == ("images/scorer/1/build.log", "done\n")
    assert updated.properties == {"local.python": "/env/bin/python"}
    assert updated.updated_at >= updated.created_at
    done = store.update_image(WS, "scorer", 1, status=ImageStatus.SUCCEEDED,
                              properties={"local.python": "/env/bin/python"})  # same value: fine
    assert done.status is ImageStatus.SUCCEEDED and store.get_image(WS, "scorer", 1) == done
    before = dump_tables(store)
    with pytest.raises(ConflictError, match="Image 'scorer' version 1 in workspace 'ws' is already Succeeded"):
        store.update_image(WS, "scorer", 1, status=ImageStatus.FAILED)
    with pytest.raises(ConflictError, match="Property 'local.python' of image 'scorer' version 1"):
        store.update_image(WS, "scorer", 1, properties={"local.python": "/elsewhere"})
    assert dump_tables(store) == before
    # A terminal image still takes its log and error: the failure path writes them after the status.
    assert store.update_image(WS, "scorer", 1, status=ImageStatus.SUCCEEDED, error="late").error == "late"


def test_not_found_and_invalid_input_change_nothing(ws: SqlStore) -> None:
    store = ws
    _image(store)
    before = dump_tables(store)
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' version 3 not found in workspace 'ws'"):
        store.get_image(WS, "scorer", 3)
    with pytest.raises(ImageNotFoundError, match="Image 'nope' not found in workspace 'ws'"):
        store.get_image(WS, "nope")
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' version 3 not found"):
        store.update_image(WS, "scorer", 3, digest="x")
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' version 3 not found"):
        store.set_image_tags(WS, "scorer", 3, {"a": "b"})
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' version 3 not found"):
        store.delete_image_version(WS, "scorer", 3)
    with pytest.raises(ModelNotFoundError, match="Model 'model' version 9 not found in workspace 'ws'"):
        _image(store, models=("model:1", "model:9"))
    with pytest.raises(ModelNotFoundError, match="Model 'ghost' version 1 not found"):
        _image(store, "new-name", models=("ghost:1",))
    for bad in ("model", "model:0", "model:x", ":1"):
        with pytest.raises(ValidationError, match="must look like 'name:version'"):
            _image(store, models=(bad,))
    with pytest.raises(ValidationError, match="lists a model version twice"):
        _image(store, models=("model:1", "model:1"))
    with pytest.raises(ValidationError, match=refusal(store, "spec of image 'scorer' is not JSON-serialisable")):
        _image(store, spec={"x": object()})
    for call in (
        lambda: _image(store, workspace="nope"),
        lambda: store.get_image("nope", "scorer"),
        lambda: store.search_images("nope"),
        lambda: store.update_image("nope", "scorer", 1, digest="x"),
        lambda: store.set_image_tags("nope", "scorer", 1, {}),
        lambda: store.delete_image_version("nope", "scorer", 1),
    ):
        with pytest.raises(WorkspaceNotFoundError, match="Workspace 'nope' not found"):
            call()
    assert dump_tables(store) == before
    assert _image(store).version == 2  # a refused create took no version number


def test_versions_are_never_reused(ws: SqlStore) -> None:
    store = ws
    for _ in range(3):
        _image(store)
    store.delete_image_version(WS, "scorer", 3)
    assert store.get_image(WS, "scorer").version == 2
    assert _image(store).version == 4
    for version in (1, 2, 4):
        store.delete_image_version(WS, "scorer", version)
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' not found in workspace 'ws'"):
        store.get_image(WS, "scorer")
    assert _image(store).version == 5
    tables = dump_tables(store)
    assert len(tables["images"]) == 1 and len(tables["image_models"]) == 1


def test_tags_and_search(ws: SqlStore) -> None:
    store = ws
    new_workspace(store, "elsewhere")
    _model(store, workspace="elsewhere")
    _image(store, "a", tags={"stage": "dev"})  # a:1 uses model:1
    _image(store, "a", models=("model:2",), tags={"stage": "prod"}, idempotency_key="k")  # a:2
    _image(store, "b", models=("model:2", "other:1"), tags={"stage": "prod", "gpu": "yes"})  # b:1
    _image(store, "a", models=("other:1",))  # a:3
    _image(store, "a", workspace="elsewhere", tags={"stage": "prod"})
    store.update_image(WS, "a", 2, status=ImageStatus.SUCCEEDED)

    def ids(**kwargs: Any) -> list[str]:
        return [image.id for image in store.search_images(WS, **kwargs)]

    assert ids() == ["a:3", "b:1", "a:2", "a:1"]  # newest first
    assert ids(name="a") == ["a:3", "a:2", "a:1"]
    assert ids(tags={"stage": "prod"}) == ["b:1", "a:2"]
    assert ids(tags={"stage": "*"}) == ["b:1", "a:2", "a:1"]  # "*": key present
    assert ids(tags={"stage": "prod", "gpu": "*"}) == ["b:1"]  # every tag must match
    assert ids(model="model:2") == ["b:1", "a:2"]
    assert ids(model="model:1") == ["a:1"]
    assert ids(model="other") == ["a:3", "b:1"]  # any version of the model
    assert ids(model="model:2", tags={"gpu": "*"}) == ["b:1"]
    assert ids(idempotency_key="k") == ["a:2"]
    assert ids(status=ImageStatus.SUCCEEDED) == ["a:2"]
    assert ids(latest_only=True) == ["a:3", "b:1"]
    assert ids(latest_only=True, tags={"stage": "*"}) == ["b:1", "a:2"]  # latest among the matches
    assert ids(latest_only=True, status=ImageStatus.BUILDING, name="a") == ["a:3"]
    assert ids(name="missing") == [] and ids(model="missing:1") == []
    with pytest.raises(ValidationError, match="'model:x' must look like"):
        store.search_images(WS, model="model:x")
    (b1,) = store.search_images(WS, name="b")
    assert b1 == store.get_image(WS, "b", 1) and b1.model_ids == ["model:2", "other:1"]

    store.set_image_tags(WS, "b", 1, {"stage": "retired", "new": "x"})
    assert store.get_image(WS, "b", 1).tags == {"stage": "retired", "gpu": "yes", "new": "x"}
    assert ids(tags={"stage": "prod"}) == ["a:2"]
    store.set_image_tags(WS, "b", 1, {})  # nothing to do


def test_model_version_used_by_an_image_cannot_be_deleted(ws: SqlStore) -> None:
    store = ws
    _image(store, models=("model:1",))
    _image(store, "second", models=("other:1", "model:1"))
    before = dump_tables(store)
    with pytest.raises(ConflictError) as caught:
        store.delete_model_version(WS, "model", 1)
    message = str(caught.value)
    assert message.startswith("Model 'model' version 1 is used by an image in workspace 'ws'")
    assert "image 'scorer' version 1" in message and "image 'second' version 1" in message
    assert dump_tables(store) == before

    store.delete_model_version(WS, "model", 2)  # not used: deleted
    store.delete_image_version(WS, "scorer", 1)
    with pytest.raises(ConflictError, match=r"\(image 'second' version 1\)"):
        store.delete_model_version(WS, "model", 1)
    store.delete_image_version(WS, "second", 1)
    store.delete_model_version(WS, "model", 1)  # free now
    store.delete_model_version(WS, "other", 1)
    assert store.search_models(WS) == []


def test_idempotency_key_finds_the_version(ws: SqlStore) -> None:
    store = ws
    created = _image(store, idempotency_key="task-1")
    _image(store, idempotency_key="task-2")
    assert store.search_images(WS, name="scorer", idempotency_key="task-1") == [created]
    assert store.search_images(WS, name="other", idempotency_key="task-1") == []


def test_concurrent_creates_get_distinct_versions(ws: SqlStore) -> None:
    """Threads sharing one store (one pool); on PostgreSQL this races real transactions."""
    store = ws
    threads_n, per_thread = 6, 5
    barrier = threading.Barrier(threads_n)
    versions: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                version = _image(store, "contended").version
                with lock:
                    versions.append(version)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == list(range(1, threads_n * per_thread + 1))


def test_create_and_delete_model_race(ws: SqlStore) -> None:
    """An image created while its model version is being deleted: one of the two wins, cleanly."""
    store = ws
    outcomes: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def create() -> None:
        barrier.wait()
        try:
            outcomes["image"] = _image(store, models=("model:2",))
        except ModelNotFoundError as exc:
            outcomes["image"] = exc

    def remove() -> None:
        barrier.wait()
        try:
            store.delete_model_version(WS, "model", 2)
            outcomes["delete"] = "deleted"
        except ConflictError as exc:
            outcomes["delete"] = exc

    threads = [threading.Thread(target=create), threading.Thread(target=remove)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if isinstance(outcomes["image"], ImageRecord):
        assert isinstance(outcomes["delete"], ConflictError)
        assert store.get_model_version(WS, "model", 2).version == 2
    else:
        assert outcomes["delete"] == "deleted"
        assert store.search_images(WS) == []
