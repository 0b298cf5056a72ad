"""A not-found error lists what exists, in one order on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from airflow_aml.exceptions import (
    DatastoreNotFoundError,
    DeploymentNotFoundError,
    ExperimentNotFoundError,
    ImageNotFoundError,
    ModelNotFoundError,
    WorkspaceNotFoundError,
)
from airflow_aml.names import available
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, new_workspace


def test_available_sorts_and_caps() -> None:
    assert available([]) == "; there are none yet"
    assert available(["b", "B", "a-1", "a_1"], label="existing x") == "; existing x: B, a-1, a_1, b"
    assert available([10, 2, 1, 2]) == "; available: 1, 2, 10"
    assert available([f"n{i:02d}" for i in range(13)], limit=3) == "; available: n00, n01, n02 and 10 more"


def test_each_registry_names_what_exists(store: SqlStore) -> None:
    with pytest.raises(WorkspaceNotFoundError, match=r"^Workspace 'nope' not found; no workspace exists yet$"):
        store.get_workspace("nope")
    new_workspace(store)
    new_workspace(store, "Zed")
    with pytest.raises(WorkspaceNotFoundError, match=r"; existing workspaces: Zed, ws$"):
        store.get_workspace("nope")

    with pytest.raises(ExperimentNotFoundError, match=r"'iris' not found in workspace 'ws'; no experiment exists yet$"):
        store.get_experiment(WS, "iris")
    for name in ("iris-train", "Iris", "a.b"):
        store.get_or_create_experiment(WS, name)
    store.get_or_create_experiment("Zed", "elsewhere")  # another workspace's names are never listed
    with pytest.raises(ExperimentNotFoundError, match=r"; existing experiments: Iris, a\.b, iris-train$"):
        store.get_experiment(WS, "iris")

    with pytest.raises(ModelNotFoundError, match=r"Model 'm' not found in workspace 'ws'; no model exists yet$"):
        store.get_model_version(WS, "m")
    for name in ("m", "m", "m", "n"):
        store.create_model_version(WS, name, path=f"models/{name}", datastore="files", created_by="alice")
    store.delete_model_version(WS, "m", 2)
    with pytest.raises(ModelNotFoundError, match=r"'m' version 2 not found in .*; existing versions of 'm': 1, 3$"):
        store.get_model_version(WS, "m", 2)
    with pytest.raises(ModelNotFoundError, match=r"'x' version 1 not found in workspace 'ws'; existing models: m, n$"):
        store.get_model_version(WS, "x", 1)
    with pytest.raises(ModelNotFoundError, match=r"'mm' not found in workspace 'ws'; existing models: m, n$"):
        store.get_model_version(WS, "mm")
    # An image of a missing model version names the versions there are.
    with pytest.raises(ModelNotFoundError, match=r"'m' version 9 not found .*; existing versions of 'm': 1, 3$"):
        store.create_image_version(WS, "img", builder="local", created_by="alice", model_ids=["m:9"], spec={})

    store.create_image_version(WS, "img", builder="local", created_by="alice", model_ids=["m:1"], spec={})
    with pytest.raises(ImageNotFoundError, match=r"'img' version 4 not found .*; existing versions of 'img': 1$"):
        store.get_image(WS, "img", 4)
    with pytest.raises(DeploymentNotFoundError, match=r"'svc' not found in workspace 'ws'; no deployment exists yet$"):
        store.get_deployment(WS, "svc")
    with pytest.raises(ImageNotFoundError, match=r"'img' version 2 not found .*; existing versions of 'img': 1$"):
        store.create_deployment(WS, "svc", target="local", image_id="img:2", created_by="alice", config={})
    store.create_deployment(WS, "svc", target="local", image_id="img:1", created_by="alice", config={})
    with pytest.raises(DeploymentNotFoundError, match=r"; existing deployments: svc$"):
        store.get_deployment(WS, "other")

    store.register_datastore(WS, "files", kind="nfs", config={"root": "/tmp/x"})
    with pytest.raises(DatastoreNotFoundError, match=r"'nope' not found in workspace 'ws'; existing datastores: files"):
        store.get_datastore(WS, "nope")
