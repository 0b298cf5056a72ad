"""A workspace with images as the docker builder records them (builder ``docker``, a Docker
reference as location), for the remote deployment targets' tests. The images are not built: the
remote targets only name their reference under the registry prefix, which no test pulls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.entities import ImageStatus
from airflow_aml.workspace import Workspace


@pytest.fixture
def remote_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "aml-home"))
    monkeypatch.delenv("AML_STORE_URI", raising=False)
    monkeypatch.delenv("AML_SECRET_KEY", raising=False)
    monkeypatch.setenv("AML_PRINCIPAL", "alice")
    monkeypatch.setenv("AML_PROGRESS", "0")
    ws = Workspace.create("ws", store_uri=f"sqlite:///{tmp_path / 'aml.db'}", datastore_root=tmp_path / "datastore")
    for builder in ("docker", "docker", "local"):
        record = ws.store.create_image_version(ws.name, "iris" if builder == "docker" else "plain", builder=builder,
                                               created_by="alice", model_ids=[], spec={})
        ws.store.update_image(ws.name, record.name, record.version, status=ImageStatus.SUCCEEDED,
                              location=f"aml/{record.name}:{record.version}")
    yield ws
