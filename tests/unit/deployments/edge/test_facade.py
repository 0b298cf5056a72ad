"""The Workspace's IoT Edge methods: which images they take, and their settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.deployments.edge import module_of
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.docker import DockerEngineUnavailableError
from airflow_aml.runtime.scoring import ScoringConfig, hash_key
from airflow_aml.workspace import Workspace
from tests.unit.deployments.edge.conftest import REFERENCE


def test_the_manifest_serves_the_images_docker_reference_with_the_given_key(edge_ws: Workspace) -> None:
    manifest, key = edge_ws.edge_manifest("iris-edge", "edge-img", key="my-key-" + "z" * 30, startup_order=3)
    module = module_of(manifest, "iris-edge")
    assert module["settings"]["image"] == REFERENCE and module["startupOrder"] == 3
    config = ScoringConfig.model_validate_json(module["env"]["AML_SCORING_CONFIG"]["value"])
    assert config.primary_key_hash == hash_key(key) and key.startswith("my-key-")
    _, generated = edge_ws.edge_manifest("iris-edge", "edge-img:1")
    assert len(generated) >= 32 and generated != key


def test_unknown_settings_bad_names_and_images_not_built_by_docker_are_refused(
    edge_ws: Workspace, fake_builder: object, source: Path,
) -> None:
    with pytest.raises(ValidationError, match="Unknown edge module settings: colour"):
        edge_ws.edge_manifest("iris-edge", "edge-img:1", colour="red")
    with pytest.raises(ValidationError, match="edge module"):
        edge_ws.edge_manifest("bad name!", "edge-img:1")
    other = edge_ws.create_image("other", {"models": ["m"], "source_directory": str(source),
                                           "entry_script": "score.py"}, builder="fake")
    with pytest.raises(ValidationError, match=r"built by the 'fake' builder; an IoT Edge module needs"):
        edge_ws.edge_manifest("iris-edge", other)


def test_export_needs_the_image_in_the_docker_engine(edge_ws: Workspace, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerEngineUnavailableError, match="Docker engine not reachable at unix://"):
        edge_ws.export_edge_module("iris-edge", "edge-img:1", tmp_path / "out")
    assert not (tmp_path / "out" / "export.json").exists()
