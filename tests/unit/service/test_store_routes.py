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


def test_runs_search_pages_through_the_database_and_metric_series_are_downsampled(
    client: TestClient, store_uri: str,
) -> None:
    import math

    from airflow_aml.store import get_store
    from tests.unit.store.helpers import scalar

    body = {"name": "w", "description": "", "default_datastore": "main", "datastore": {"kind": "local", "config": {}}}
    assert client.post("/api/v1/workspaces", json=body).status_code == 200
    store = get_store(store_uri)
    for index in range(7):
        store.create_run(workspace="w", experiment="e", submitted_by="alice", run_id=f"r{index}")
        store.log_batch(f"r{index}", [scalar("acc", index / 10, 0)])
    query = {"query": {"experiment": "e", "order_by_metric": "acc", "descending": False}}
    seen, cursor = [], None
    for _ in range(5):  # bounded: 7 runs in pages of 3 are three pages
        page = client.post("/api/v1/workspaces/w/runs:search", json=query,
                           params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen.append([run["run_id"] for run in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]

    store.log_batch("r0", [scalar("loss", math.cos(step / 50), step) for step in range(20_000)])
    answer = client.get("/api/v1/runs/r0/metric-series", params={"max_points": 500})
    assert answer.status_code == 200
    loss = {one["name"]: one for one in answer.json()["series"]}["loss"]
    assert loss["total_points"] == 20_000 and len(loss["steps"]) == len(loss["values"]) <= 500
    assert loss["steps"][0] == 0 and loss["steps"][-1] == 19_999
    assert client.get("/api/v1/runs/r0/metric-series", params={"max_points": 2}).status_code == 422


def test_a_page_of_top_level_runs_and_their_child_counts(client: TestClient, store_uri: str) -> None:
    """What the runs table asks: one page of top-level runs, then their child counts in one call."""
    from airflow_aml.store import get_store

    body = {"name": "w", "description": "", "default_datastore": "main", "datastore": {"kind": "local", "config": {}}}
    assert client.post("/api/v1/workspaces", json=body).status_code == 200
    store = get_store(store_uri)
    for index in range(3):
        store.create_run(workspace="w", experiment="e", submitted_by="alice", run_id=f"p{index}")
        for child in range(index):
            store.create_run(workspace="w", experiment="e", submitted_by="alice", run_id=f"p{index}c{child}",
                             parent_run_id=f"p{index}")
    page = client.post("/api/v1/workspaces/w/runs:search", params={"limit": 2},
                       json={"query": {"experiment": "e", "top_level_only": True}}).json()
    ids = [run["run_id"] for run in page["items"]]
    assert ids == ["p2", "p1"] and page["next_cursor"]
    answer = client.post("/api/v1/workspaces/w/runs:child-counts", json={"run_ids": ids})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"p2": 2, "p1": 1}
    refused = client.post("/api/v1/workspaces/nope/runs:child-counts", json={"run_ids": ids})
    assert refused.status_code in (403, 404)
