"""GET /workspaces/{w}/airflow-objects: what a DAG run or one task instance of it created, found
by the marks the operators write (runs: properties; model versions, images, deployments: tags),
and nothing of another DAG run, task or map index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_aml.context import DEFAULT_DATASTORE
from airflow_aml.entities import Role
from airflow_aml.store.sql.store import SqlStore
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve


def _marks(run_id: str, task_id: str, map_index: int = -1) -> dict[str, str]:
    return {"airflow.dag_id": "train", "airflow.run_id": run_id, "airflow.task_id": task_id,
            "airflow.map_index": str(map_index)}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Served, dict[str, str]]]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "service-home"))
    uri = f"sqlite:///{tmp_path / 'aml.db'}"
    with serve(uri) as running:
        ws = Workspace.create("ws", store_uri=running.uri_for("alice"))
        ws.assign_role("rita", Role.READER)
        store = SqlStore(uri)
        made = {
            "run": store.create_run(workspace="ws", experiment="exp", submitted_by="alice",
                                    properties=_marks("manual__1", "fit")).run_id,
            "mapped_run": store.create_run(workspace="ws", experiment="exp", submitted_by="alice",
                                           properties=_marks("manual__1", "fit", 2)).run_id,
            "other_dag_run": store.create_run(workspace="ws", experiment="exp", submitted_by="alice",
                                              properties=_marks("manual__2", "fit")).run_id,
            # a tag of the same key and value is not a property: runs match on properties only
            "tagged_run": store.create_run(workspace="ws", experiment="exp", submitted_by="alice",
                                           tags=_marks("manual__1", "fit")).run_id,
        }
        store.create_model_version("ws", "clf", path="models/m", datastore=DEFAULT_DATASTORE, created_by="alice",
                                   tags=_marks("manual__1", "register"))
        store.create_model_version("ws", "clf", path="models/m", datastore=DEFAULT_DATASTORE, created_by="alice",
                                   tags=_marks("manual__2", "register"))
        store.create_image_version("ws", "img", builder="docker", created_by="alice", model_ids=["clf:1"],
                                   spec={}, tags=_marks("manual__1", "package"))
        store.create_deployment("ws", "svc", target="local", image_id="img:1", created_by="alice", config={},
                                tags=_marks("manual__1", "deploy"))
        yield running, made


def _get(running: Served, principal: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{running.url}/api/v1/workspaces/ws/airflow-objects", params=params,
                     headers={"Authorization": f"Bearer {running.token(principal)}"})


def test_a_dag_run_lists_what_its_tasks_created(served: tuple[Served, dict[str, str]]) -> None:
    running, made = served
    answer = _get(running, "rita", dag_id="train", run_id="manual__1")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert {run["run_id"] for run in found["runs"]} == {made["run"], made["mapped_run"]}
    assert [(m["name"], m["version"]) for m in found["models"]] == [("clf", 1)]
    assert [(i["name"], i["version"]) for i in found["images"]] == [("img", 1)]
    assert [d["name"] for d in found["deployments"]] == ["svc"]


def test_a_task_instance_lists_only_its_own(served: tuple[Served, dict[str, str]]) -> None:
    running, made = served
    found = _get(running, "rita", dag_id="train", run_id="manual__1", task_id="fit", map_index=2).json()
    assert [run["run_id"] for run in found["runs"]] == [made["mapped_run"]]
    assert found["models"] == found["images"] == found["deployments"] == []
    found = _get(running, "rita", dag_id="train", run_id="manual__2", task_id="register").json()
    assert found["runs"] == [] and [m["version"] for m in found["models"]] == [2]


def test_a_caller_without_a_role_is_refused_and_dag_id_is_required(served: tuple[Served, dict[str, str]]) -> None:
    running, _ = served
    assert _get(running, "nobody", dag_id="train").status_code == 403
    assert _get(running, "rita").status_code == 422
