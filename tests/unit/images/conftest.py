"""Fixtures of the image tests: a workspace with a registered model, a scoring source folder, and
a fast fake builder (the real ``local`` builder runs uv: those tests are marked slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.entities import ImageRecord
from airflow_aml.images import builders
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, LogFn, ProgressFn
from airflow_aml.workspace import Workspace

SCORE_PY = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model" / "model.txt"
    path.parent.mkdir()
    path.write_text("weights: 1 2 3\n")
    return path


@pytest.fixture
def ws(workspace: Workspace, model_file: Path) -> Workspace:
    """The test workspace with model ``m`` version 1 (a one-file model)."""
    workspace.register_model("m", path=model_file)
    return workspace


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "score"
    (folder / "lib").mkdir(parents=True)
    (folder / "score.py").write_text(SCORE_PY)
    (folder / "lib" / "helpers.py").write_text("X = 1\n")
    (folder / "notes.tmp").write_text("ignored\n")
    (folder / ".amlignore").write_text("*.tmp\n")
    return folder


class FakeBuilder(AbstractImageBuilder):
    """Records its calls; reports progress like a real builder, fails on demand."""

    kind = "fake"
    calls: list[tuple[Path, ImageRecord]] = []
    fail_with: Exception | None = None

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        FakeBuilder.calls.append((bundle, record))
        progress(0.0, "Faking an environment")
        log("fake builder line 1\nfake builder line 2")
        if FakeBuilder.fail_with is not None:
            raise FakeBuilder.fail_with
        progress(1.0, "Fake environment ready")
        return BuildResult(location=str(bundle), digest=bundle.name, properties={"fake.built": "yes"})


@pytest.fixture
def fake_builder() -> Iterator[type[FakeBuilder]]:
    FakeBuilder.calls = []
    FakeBuilder.fail_with = None
    builders.register_image_builder("fake", FakeBuilder)
    yield FakeBuilder
    builders._KINDS.pop("fake", None)
