"""Deployments in the SQL store (SQLite and, with AML_TEST_POSTGRES_URI, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_aml.entities import DeploymentRecord, DeploymentState, ImageRecord
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    DeploymentNotFoundError,
    ImageNotFoundError,
    WorkspaceNotFoundError,
)
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, new_workspace


def _image(store: SqlStore, name: str = "scorer") -> ImageRecord:
    return store.create_image_version(WS, name, builder="local", created_by="alice", model_ids=["model:1"], spec={})


def _deployment(store: SqlStore, name: str = "svc", image: str = "scorer:1", **kwargs: Any) -> DeploymentRecord:
    kwargs.setdefault("target", "local")
    kwargs.setdefault("created_by", "alice")
    kwargs.setdefault("config", {"replicas": 1})
    return store.create_deployment(WS, name, image_id=image, **kwargs)


@pytest.fixture
def ws(store: SqlStore) -> SqlStore:
    """Workspace ``ws`` with model:1 and images scorer:1, scorer:2."""
    new_workspace(store)
    store.create_model_version(WS, "model", path="models/model", datastore="files", created_by="alice")
    _image(store)
    _image(store)
    return store


def test_create_records_everything_given(ws: SqlStore) -> None:
    record = _deployment(
        ws, scoring_uri="http://127.0.0.1:5001/score", primary_key_hash="a" * 64, secondary_key_hash="b" * 64,
        tags={"team": "ml"}, properties={"p": "1"}, runtime={"port": 5001}, description="iris", idempotency_key="k1",
    )
    assert record.state is DeploymentState.TRANSITIONING
    assert (record.id, record.image_id, record.serving_image_id, record.generation) == ("svc", "scorer:1", None, 1)
    assert record.config == {"replicas": 1} and record.runtime == {"port": 5001}
    assert (record.tags, record.properties, record.description) == ({"team": "ml"}, {"p": "1"}, "iris")
    assert record.primary_key_hash == "a" * 64 and record.secondary_key_hash == "b" * 64
    assert_utc(record)
    assert ws.get_deployment(WS, "svc") == record


def test_names_are_unique_per_workspace(ws: SqlStore) -> None:
    _deployment(ws)
    with pytest.raises(AlreadyExistsError, match="Deployment 'svc' already exists in workspace 'ws'"):
        _deployment(ws, image="scorer:2")


def test_unknown_image_workspace_and_deployment(ws: SqlStore) -> None:
    with pytest.raises(ImageNotFoundError, match="Image 'scorer' version 9"):
        _deployment(ws, image="scorer:9")
    with pytest.raises(WorkspaceNotFoundError):
        ws.create_deployment("nope", "svc", target="local", image_id="scorer:1", created_by="a", config={})
    with pytest.raises(DeploymentNotFoundError, match="Deployment 'ghost' not found in workspace 'ws'"):
        ws.get_deployment(WS, "ghost")
    with pytest.raises(DeploymentNotFoundError):
        ws.update_deployment(WS, "ghost", state=DeploymentState.HEALTHY)
    with pytest.raises(DeploymentNotFoundError):
        ws.delete_deployment(WS, "ghost")
    assert ws.search_deployments(WS) == []


def test_update_changes_only_what_is_given(ws: SqlStore) -> None:
    _deployment(ws, tags={"a": "1"})
    record = ws.update_deployment(WS, "svc", state=DeploymentState.HEALTHY, serving_image_id="scorer:1",
                                  runtime={"replicas": []}, error="boom", tags={"b": "2"})
    assert record.state is DeploymentState.HEALTHY and record.serving_image_id == "scorer:1"
    assert record.error == "boom" and record.tags == {"a": "1", "b": "2"} and record.generation == 1
    record = ws.update_deployment(WS, "svc", image_id="scorer:2", next_generation=True, error="")
    assert (record.image_id, record.serving_image_id, record.generation, record.error) == (
        "scorer:2", "scorer:1", 2, None)
    assert record.runtime == {"replicas": []}


def test_if_generation_refuses_a_stale_report(ws: SqlStore) -> None:
    _deployment(ws)
    ws.update_deployment(WS, "svc", next_generation=True)
    with pytest.raises(ConflictError, match="at generation 2, not 1"):
        ws.update_deployment(WS, "svc", state=DeploymentState.HEALTHY, if_generation=1)
    assert ws.update_deployment(WS, "svc", state=DeploymentState.HEALTHY, if_generation=2).state is (
        DeploymentState.HEALTHY)


def test_search_filters(ws: SqlStore) -> None:
    _image(ws, "other")
    _deployment(ws, "a", tags={"team": "ml"})
    _deployment(ws, "b", image="scorer:2", target="docker", tags={"team": "ops"})
    _deployment(ws, "c", image="other:1", idempotency_key="key-c")
    ws.update_deployment(WS, "a", serving_image_id="scorer:1", image_id="scorer:2", state=DeploymentState.HEALTHY)

    def names(**filters: Any) -> list[str]:
        return [r.name for r in ws.search_deployments(WS, **filters)]

    assert names() == ["a", "b", "c"]
    assert names(target="docker") == ["b"]
    assert names(state=DeploymentState.HEALTHY) == ["a"]
    assert names(image="scorer:1") == ["a"]  # serving it, while rolling out scorer:2
    assert names(image="scorer:2") == ["a", "b"]
    assert names(image="scorer") == ["a", "b"]
    assert names(image="other") == ["c"]
    assert names(tags={"team": "ml"}) == ["a"]
    assert names(tags={"team": "*"}) == ["a", "b"]
    assert names(idempotency_key="key-c") == ["c"]


def test_an_image_a_deployment_uses_cannot_be_deleted(ws: SqlStore) -> None:
    _deployment(ws)
    with pytest.raises(ConflictError, match="Image 'scorer' version 1 in workspace 'ws' is used by deployment 'svc'"):
        ws.delete_image_version(WS, "scorer", 1)
    # While scorer:2 rolls out, both versions are in use.
    ws.update_deployment(WS, "svc", serving_image_id="scorer:1", image_id="scorer:2")
    for version in (1, 2):
        with pytest.raises(ConflictError, match="deployment 'svc'"):
            ws.delete_image_version(WS, "scorer", version)
    ws.delete_deployment(WS, "svc")
    ws.delete_image_version(WS, "scorer", 1)
    ws.delete_image_version(WS, "scorer", 2)
    assert ws.search_images(WS) == []


def test_delete_removes_the_record(ws: SqlStore) -> None:
    _deployment(ws)
    ws.delete_deployment(WS, "svc")
    with pytest.raises(DeploymentNotFoundError):
        ws.get_deployment(WS, "svc")
    assert _deployment(ws).generation == 1  # the name can be used again
