"""Model versions: the tree digest recorded at registration is the stored files', and a download
is checked against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.exceptions import ArtifactNotFoundError, IntegrityError, ModelNotFoundError
from airflow_aml.hashing import tree_sha256
from airflow_aml.workspace import Workspace


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (folder / "sub" / "meta.json").write_text('{"k": 1}')
    return folder


def test_download_verifies_the_recorded_tree(workspace: Workspace, model_dir: Path, tmp_path: Path) -> None:
    model = workspace.register_model("m", path=model_dir)
    good = model.download(tmp_path / "good")
    assert sorted(p.relative_to(good).as_posix() for p in good.rglob("*") if p.is_file()) == [
        "sub/meta.json", "weights.bin",
    ]
    datastore = workspace.get_datastore(model.record.datastore)
    datastore.write_bytes(f"{model.record.path}/weights.bin", b"rewritten")  # object and sidecar agree
    with pytest.raises(IntegrityError, match=r"Model 'm' version 1: the files downloaded have tree SHA-256 \w+, "
                                             rf"not the {model.record.sha256} recorded"):
        model.download(tmp_path / "bad")
    assert not [p for p in (tmp_path / "bad").rglob("*") if p.is_file()]  # nothing half-trusted stays

    datastore.write_bytes(f"{model.record.path}/weights.bin", b"\x00\x01" * 1000)  # restored ...
    datastore.write_bytes(f"{model.record.path}/extra.txt", b"added")  # ... but a file was added
    with pytest.raises(IntegrityError):
        model.download(tmp_path / "added")
    datastore.delete(f"{model.record.path}/extra.txt")
    assert model.download(tmp_path / "again", exist_ok=True) == tmp_path / "again"


def test_a_single_file_model_returns_the_file(workspace: Workspace, model_dir: Path, tmp_path: Path) -> None:
    model = workspace.register_model("one", path=model_dir / "weights.bin")
    assert model.download(tmp_path / "out") == tmp_path / "out" / "weights.bin"


def _listed_tree(workspace: Workspace, model) -> str:
    """The tree digest of what the datastore holds for the version, from a listing."""
    datastore = workspace.get_datastore(model.record.datastore)
    prefix = model.record.path + "/"
    return tree_sha256((info.path[len(prefix):], info.sha256) for info in datastore.list(prefix))


def test_the_recorded_tree_is_the_stored_one_for_every_source(workspace: Workspace, model_dir: Path) -> None:
    run = workspace.experiment("train").start_logging()
    run.upload_folder("outputs/model", model_dir)
    run.complete()
    datastore = workspace.get_default_datastore()
    datastore.upload(model_dir, "shared/model")
    models = [
        workspace.register_model("folder", path=model_dir),
        workspace.register_model("file", path=model_dir / "weights.bin"),
        workspace.register_model("run-folder", run_id=run.id, run_path="outputs/model"),
        workspace.register_model("run-file", run_id=run.id, run_path="outputs/model/sub/meta.json"),
        workspace.register_model("datastore", datastore_path="shared/model"),
    ]
    for model in models:
        assert model.record.sha256 == _listed_tree(workspace, model), model.name
    assert models[0].record.sha256 == models[2].record.sha256 == models[4].record.sha256  # same files
    assert models[1].files() == ["weights.bin"] and models[3].files() == ["meta.json"]
    assert models[2].files() == ["sub/meta.json", "weights.bin"]


def test_a_source_without_files_registers_nothing(workspace: Workspace) -> None:
    run = workspace.experiment("train").start_logging()
    run.complete()
    with pytest.raises(ArtifactNotFoundError, match="has no files"):
        workspace.register_model("none", run_id=run.id, run_path="outputs/missing")
    with pytest.raises(ModelNotFoundError):
        workspace.get_model("none")
    assert not list(workspace.get_default_datastore().list("models/"))
