"""The real ``mlflow`` client against a served workspace: the service in a uvicorn thread, the
client in this process, pointed at the workspace's tracking URI with a personal token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from airflow_aml.entities import Role
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve

WS = "demo"


@dataclass
class Tracking:
    served: Served
    uri: str  # the tracking URI of workspace WS
    workspace: Workspace  # the Owner's handle, through the service

    def as_principal(self, principal: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """The MLflow client of this process acts as ``principal`` from now on."""
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", self.served.token(principal))


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracking]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "service-home"))
    monkeypatch.delenv("AML_STORE_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    # The client's process-wide active experiment (mlflow.set_experiment): each test starts without.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    with serve(f"sqlite:///{tmp_path / 'aml.db'}") as served:
        owner = Workspace.create(WS, store_uri=served.uri_for("alice"))
        owner.assign_role("rita", Role.READER)
        uri = f"{served.url}/api/v1/workspaces/{WS}/mlflow"
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", served.token("alice"))
        # No retries with backoff on a failing call: a test fails at once instead.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mlflow.set_tracking_uri(uri)
        try:
            yield Tracking(served=served, uri=uri, workspace=owner)
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
