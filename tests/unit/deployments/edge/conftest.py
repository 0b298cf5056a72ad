"""A workspace holding an image as the docker builder records it (a Docker image reference),
made by the image tests' fake builder registered as ``docker`` for the test: the hub and export
paths need the record, not a real build (test_module_container builds a real one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.entities import ImageRecord
from airflow_aml.images import builders
from airflow_aml.images.builders import BuildResult, LogFn, ProgressFn
from airflow_aml.workspace import Workspace
from tests.unit.images.conftest import SCORE_PY, FakeBuilder, fake_builder, source  # noqa: F401 (fixtures)

REFERENCE = "aml-test/edge-img:1"


class FakeDockerBuilder(FakeBuilder):
    kind = "docker"

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        super().build(bundle, record, progress, log)
        return BuildResult(location=REFERENCE, digest="sha256:" + "0" * 64,
                           properties={"docker.image_id": "sha256:" + "0" * 64})


@pytest.fixture
def edge_ws(workspace: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    """The test workspace with image ``edge-img:1``, "built" by the docker builder."""
    previous = builders._KINDS.get("docker")
    builders._KINDS["docker"] = FakeDockerBuilder
    try:
        model = tmp_path / "model.txt"
        model.write_text("1 2 3\n")
        workspace.register_model("m", path=model)
        source = tmp_path / "src"
        source.mkdir()
        (source / "score.py").write_text(SCORE_PY)
        workspace.create_image("edge-img", {"models": ["m"], "source_directory": str(source),
                                            "entry_script": "score.py"}, builder="docker")
        yield workspace
    finally:
        if previous is not None:
            builders._KINDS["docker"] = previous
        else:
            builders._KINDS.pop("docker", None)
