"""Model versions: a download is checked against the tree digest recorded at registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.exceptions import IntegrityError
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
