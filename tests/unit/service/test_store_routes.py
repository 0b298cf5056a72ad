"""The store routes' own checks of what a client sends (beyond the schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_aml.service.app import create_app
from airflow_aml.service.tokens import mint_personal_token


@pytest.fixture
def client(aml_home: Path, store_uri: str) -> Iterator[TestClient]:
    app = create_app(store_uri)
    token, _ = mint_personal_token(app.state.aml.tokens, "alice", name="test", expires_in=None)
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.mark.parametrize(("default_datastore", "datastore"), [
    ("main", {}),  # found by schemathesis: a KeyError, answered 500
    ("main", {"kind": "local"}),
    ("main", {"kind": "local", "config": 5}),
    ("main", {"kind": 1, "config": {}}),
    ("bad name!", None),
])
def test_create_workspace_refuses_a_malformed_datastore(
    client: TestClient, default_datastore: str, datastore: dict[str, object] | None,
) -> None:
    body = {"name": "w", "description": "", "default_datastore": default_datastore, "datastore": datastore}
    answer = client.post("/api/v1/workspaces", json=body)
    assert answer.status_code == 400, answer.text
    assert client.get("/api/v1/workspaces/w").status_code == 404  # nothing half-made


def test_create_workspace_with_a_local_datastore(client: TestClient) -> None:
    body = {"name": "w", "description": "", "default_datastore": "main", "datastore": {"kind": "local", "config": {}}}
    assert client.post("/api/v1/workspaces", json=body).status_code == 200
    assert client.get("/api/v1/workspaces/w/datastores/main").json()["is_default"] is True


@pytest.mark.parametrize("root", ["/", "/etc", "..", "../other-workspace", "sub/../../.."])
def test_a_local_datastore_cannot_leave_the_workspace_folder(client: TestClient, root: str) -> None:
    """Any principal may create a workspace and is its Owner there: a local datastore rooted at
    / would read the service's database and secret.key, or another workspace's files."""
    body = {"name": "w", "description": "", "default_datastore": "main", "datastore": {"kind": "local", "config": {}}}
    assert client.post("/api/v1/workspaces", json=body).status_code == 200
    answer = client.put("/api/v1/workspaces/w/datastores/escape", json={"kind": "local", "config": {"root": root}})
    assert answer.status_code == 403, answer.text
    assert "must lie under" in answer.json()["error"]["message"]
    assert client.get("/api/v1/workspaces/w/datastores/escape").status_code == 404


def test_a_relative_local_datastore_root_is_taken_inside_the_workspace_folder(client: TestClient) -> None:
    body = {"name": "w", "description": "", "default_datastore": "main", "datastore": {"kind": "local", "config": {}}}
    assert client.post("/api/v1/workspaces", json=body).status_code == 200
    answer = client.put("/api/v1/workspaces/w/datastores/extra", json={"kind": "local", "config": {"root": "extra"}})
    assert answer.status_code == 200, answer.text
    main_root = client.get("/api/v1/workspaces/w/datastores/main").json()["config"]["root"]
    assert answer.json()["config"]["root"].startswith(main_root.rsplit("/", 1)[0] + "/")
