"""``airflow-aml models ...``: the registry from the command line, lineage and refusals included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_aml.entities import ImageStatus
from airflow_aml.workspace import Workspace
from tests.unit.cli.helpers import Invoke, assert_one_line_error, finished_run, ok


@pytest.fixture
def trained(ws: Workspace) -> str:
    """A completed run with an output file, as the example DAG's best child run leaves it."""
    run = finished_run(ws, "iris-train", accuracy=0.95)
    run.upload_file("outputs/model.pkl", _file(ws, b"pickled"))
    return run.id


def _file(ws: Workspace, data: bytes) -> Path:
    path = Path(ws.store_uri.removeprefix("sqlite:///")).with_name("model.pkl")
    path.write_bytes(data)
    return path


def _image_and_service(ws: Workspace, model_id: str) -> None:
    """An image packing the model and a deployment serving it, as records (no build, no process):
    what lineage and the delete guards read."""
    ws.store.create_image_version(ws.name, "scorer", builder="local", created_by="alice", model_ids=[model_id], spec={})
    ws.store.update_image(ws.name, "scorer", 1, status=ImageStatus.SUCCEEDED)
    ws.store.create_deployment(ws.name, "svc", target="local", image_id="scorer:1", created_by="alice", config={})


def test_register_list_show_download(invoke: Invoke, ws: Workspace, trained: str, tmp_path: Path) -> None:
    first = ok(invoke("models", "register", "iris", "--run-id", trained, "--tag", "stage=dev", "--description", "d"))
    assert first.stdout.strip() == "iris:1"
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"w")
    assert ok(invoke("models", "register", "iris", "--path", str(folder))).stdout.strip() == "iris:2"
    assert ok(invoke("model", "register", "other", "--path", str(folder))).stdout.strip() == "other:1"  # alias

    listed = json.loads(ok(invoke("models", "list", "--json")).stdout)
    assert [m["id"] for m in listed] == ["other:1", "iris:2", "iris:1"]
    assert [m["id"] for m in json.loads(ok(invoke("models", "list", "--tag", "stage=dev", "--json")).stdout)] == [
        "iris:1"
    ]
    latest = json.loads(ok(invoke("models", "list", "--latest", "--json")).stdout)
    assert sorted(m["id"] for m in latest) == ["iris:2", "other:1"]
    table = ok(invoke("models", "list", "--name", "iris")).stdout
    assert "iris:2" in table and "iris:1" in table and "stage=dev" in table and "other" not in table
    empty = ok(invoke("models", "list", "--tag", "stage=prod"))
    assert empty.stdout == "" and "No model version in workspace 'ws' matches" in empty.stderr

    shown = json.loads(ok(invoke("models", "show", "iris:1", "--json")).stdout)
    assert shown["run"] == {"runId": trained, "experiment": "iris-train", "status": "Completed"}
    assert shown["files"] == ["model.pkl"] and shown["images"] == [] and shown["deployments"] == []
    assert json.loads(ok(invoke("models", "show", "iris", "--json")).stdout)["version"] == 2  # NAME = latest

    ok(invoke("models", "tag", "iris:1", "stage=prod", "owner=ml"))
    assert ws.get_model("iris", 1).tags == {"stage": "prod", "owner": "ml"}

    target = tmp_path / "out"
    downloaded = ok(invoke("models", "download", "iris:1", "--output", str(target)))
    assert Path(downloaded.stdout.strip()) == target / "model.pkl" and (target / "model.pkl").read_bytes() == b"pickled"
    assert_one_line_error(invoke("models", "download", "iris:1", "--output", str(target)), "model.pkl")
    ok(invoke("models", "download", "iris:1", "--output", str(target), "--overwrite"))


def test_lineage_and_the_delete_guards(invoke: Invoke, ws: Workspace, trained: str) -> None:
    ok(invoke("models", "register", "iris", "--run-id", trained))
    _image_and_service(ws, "iris:1")

    shown = json.loads(ok(invoke("models", "show", "iris:1", "--json")).stdout)
    assert shown["images"] == [{"id": "scorer:1", "status": "Succeeded"}]
    assert [(d["name"], d["image"]) for d in shown["deployments"]] == [("svc", "scorer:1")]
    table = ok(invoke("models", "show", "iris:1")).stdout
    assert "scorer:1 (Succeeded)" in table and "svc (" in table and trained in table

    assert_one_line_error(invoke("models", "delete", "iris"), "must look like 'name:version'")  # never implied
    assert_one_line_error(invoke("models", "delete", "iris:1"), "image 'scorer' version 1", "delete the image first")
    assert_one_line_error(invoke("images", "delete", "scorer:1"), "used by deployment 'svc'")
    ws.store.delete_deployment(ws.name, "svc")
    assert ok(invoke("images", "delete", "scorer:1")).stdout.strip() == "Deleted image scorer:1"
    assert ok(invoke("models", "delete", "iris:1")).stdout.strip() == "Deleted model iris:1"
    assert ws.list_models() == []


def test_not_found_lists_what_exists(invoke: Invoke, ws: Workspace, trained: str) -> None:
    assert_one_line_error(invoke("models", "show", "iris"), "Model 'iris' not found", "no model exists yet")
    ok(invoke("models", "register", "iris", "--run-id", trained))
    ok(invoke("models", "register", "iris", "--run-id", trained))
    assert_one_line_error(invoke("models", "show", "iirs"), "existing models: iris")
    assert_one_line_error(invoke("models", "show", "iris:7"), "existing versions of 'iris': 1, 2")
    assert_one_line_error(invoke("models", "register", "x", "--run-id", "nope"), "Run 'nope' not found")


def test_reader_lists_but_cannot_register_or_delete(
    invoke: Invoke, ws: Workspace, trained: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(invoke("models", "register", "iris", "--run-id", trained))
    ws.assign_role("rita", "Reader")
    monkeypatch.setenv("AML_PRINCIPAL", "rita")
    assert [m["id"] for m in json.loads(ok(invoke("models", "list", "--json")).stdout)] == ["iris:1"]
    ok(invoke("models", "show", "iris:1"))
    assert_one_line_error(invoke("models", "register", "iris", "--run-id", trained), "rita")
    assert_one_line_error(invoke("models", "tag", "iris:1", "a=b"), "rita")
    assert_one_line_error(invoke("models", "delete", "iris:1"), "rita")
