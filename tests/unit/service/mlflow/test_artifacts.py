"""The ``mlflow-artifacts`` proxy: what the MLflow client logs as artifacts are the run's output
files in our datastore, and back."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.unit.service.mlflow.conftest import Tracking


def test_artifacts_round_trip(tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    (source / "plots").mkdir(parents=True)
    (source / "notes.txt").write_text("hello artifacts")
    (source / "plots" / "curve.bin").write_bytes(bytes(range(256)) * 1000)
    mlflow.set_experiment("files")
    with mlflow.start_run() as active:
        mlflow.log_artifact(str(source / "notes.txt"))
        mlflow.log_artifacts(str(source / "plots"), artifact_path="plots")
        mlflow.log_text("inline", "texts/inline.txt")
        run_id = active.info.run_id
    assert active.info.artifact_uri == f"mlflow-artifacts:/runs/{run_id}/outputs"

    run = tracking.workspace.get_run(run_id)
    assert sorted(name for name in run.get_file_names() if name.startswith("outputs/")) == [
        "outputs/notes.txt", "outputs/plots/curve.bin", "outputs/texts/inline.txt"]
    run.download_file("outputs/notes.txt", tmp_path / "ours.txt")
    assert (tmp_path / "ours.txt").read_text() == "hello artifacts"

    listed = MlflowClient().list_artifacts(run_id)
    assert [(item.path, item.is_dir) for item in listed] == [("notes.txt", False), ("plots", True), ("texts", True)]
    assert listed[0].file_size == len("hello artifacts")
    assert [item.path for item in MlflowClient().list_artifacts(run_id, "plots")] == ["plots/curve.bin"]

    target = tmp_path / "downloaded"
    local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(target))
    assert (Path(local) / "notes.txt").read_text() == "hello artifacts"
    assert (Path(local) / "plots" / "curve.bin").read_bytes() == bytes(range(256)) * 1000
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/texts/inline.txt") == "inline"

    # A file our SDK put in the run's outputs is an MLflow artifact too.
    run.upload_bytes("outputs/from-sdk.txt", b"sdk")
    assert "from-sdk.txt" in [item.path for item in MlflowClient().list_artifacts(run_id)]

    tracking.as_principal("rita", monkeypatch)  # a Reader downloads but does not upload
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "hello artifacts"
    with pytest.raises(requests.HTTPError, match="PERMISSION_DENIED") as refused:  # the artifact client's error
        MlflowClient().log_artifact(run_id, str(source / "notes.txt"), artifact_path="more")
    assert refused.value.response.status_code == 403
    assert "outputs/more/notes.txt" not in run.get_file_names()


def test_artifact_paths_stay_in_a_runs_outputs(tracking: Tracking) -> None:
    run_id = MlflowClient().create_run(MlflowClient().create_experiment("paths")).info.run_id
    base = f"{tracking.uri}/api/2.0/mlflow-artifacts/artifacts"
    headers = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    for path in (f"runs/{run_id}/snapshot.zip", f"runs/{run_id}/outputs/../logs/x", "elsewhere/x"):
        answer = httpx.put(f"{base}/{path}", content=b"x", headers=headers)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    missing = httpx.get(f"{base}/runs/{run_id}/outputs/none.txt", headers=headers)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    other_run = httpx.put(f"{base}/runs/{'0' * 32}/outputs/x", content=b"x", headers=headers)
    assert other_run.status_code == 404 and other_run.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
