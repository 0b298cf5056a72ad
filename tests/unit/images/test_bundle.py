"""The bundle: its layout (the contract with the scoring server and the Docker builder) and its
content digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_aml.exceptions import IntegrityError
from airflow_aml.images.bundle import Bundle, assemble_bundle, bundle_digest, bundles_dir
from airflow_aml.images.plan import BuildPlan, plan_image
from airflow_aml.images.spec import ImageSpec
from airflow_aml.workspace import Workspace
from tests.unit.images.conftest import SCORE_PY


def _plan(ws: Workspace, source: Path, name: str = "img", version: int = 1, **fields: object) -> BuildPlan:
    spec = ImageSpec.coerce(
        {"models": ["m"], "source_directory": str(source), "entry_script": "score.py", **fields}, image=name
    )
    return plan_image(ws, name, spec, builder="local").with_image(version, "activity")


def _assemble(
    ws: Workspace, plan: BuildPlan, steps: list[tuple[float, str]] | None = None
) -> tuple[Bundle, list[str]]:
    lines: list[str] = []
    bundle = assemble_bundle(
        plan, ws.get_datastore, progress=lambda f, m: (steps if steps is not None else []).append((f, m)),
        log=lines.append,
    )
    return bundle, lines


def test_layout(ws: Workspace, source: Path, aml_home: Path) -> None:
    plan = _plan(ws, source, pip=["six==1.16.0"], input_schema={"type": "array"}, output_schema={"type": "object"})
    steps: list[tuple[float, str]] = []
    bundle, lines = _assemble(ws, plan, steps)
    root = bundle.path
    assert root == aml_home / "images" / "bundles" / bundle.digest and not bundle.reused
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "app/.amlignore", "app/lib/helpers.py", "app/score.py",  # notes.tmp: excluded by .amlignore
        "image.json", "models/m/1/model.txt", "requirements.txt",
    ]
    assert (root / "app" / "score.py").read_text() == SCORE_PY
    assert (root / "models" / "m" / "1" / "model.txt").read_text() == "weights: 1 2 3\n"
    assert (root / "requirements.txt").read_text() == "six==1.16.0\n"
    assert json.loads((root / "image.json").read_text()) == {
        "name": "img",
        "version": 1,
        "entry_script": "score.py",
        "builtin_scorer": None,
        "models": [{"name": "m", "version": 1, "path": "models/m/1"}],
        "input_schema": {"type": "array"},
        "output_schema": {"type": "object"},
        "requirements": ["six==1.16.0"],
        "python": plan.python,
    }
    assert plan.python.count(".") == 1  # "3.11"
    assert [f for f, _ in steps] == sorted(f for f, _ in steps) and steps[-1][0] == 1.0
    assert any("Downloading model m:1" in m for _, m in steps)
    assert any("Bundle" in line and "created" in line for line in lines)
    assert [p.name for p in bundles_dir().iterdir()] == [bundle.digest]  # no temporary folder left


def test_digest_is_deterministic_and_ignores_the_image_identity(ws: Workspace, source: Path, tmp_path: Path) -> None:
    first, _ = _assemble(ws, _plan(ws, source))
    # Another image name and version, the same content: the same digest, the same folder.
    second, lines = _assemble(ws, _plan(ws, source, name="other", version=7))
    assert second.digest == first.digest and second.path == first.path and second.reused
    assert any("reused" in line for line in lines)
    assert bundle_digest(first.path) == first.digest

    # Touching files (new mtimes) changes nothing; image.json's name/version are not content.
    (source / "score.py").touch()
    copy = tmp_path / "copy"
    shutil.copytree(first.path, copy)
    manifest = json.loads((copy / "image.json").read_text())
    (copy / "image.json").write_text(json.dumps({**manifest, "name": "renamed", "version": 99}))
    assert bundle_digest(copy) == first.digest
    # ... but every other field, and every file, is.
    (copy / "image.json").write_text(json.dumps({**manifest, "python": "3.99"}))
    assert bundle_digest(copy) != first.digest
    (copy / "image.json").write_text(json.dumps(manifest))
    (copy / "app" / "extra.txt").write_text("x")
    assert bundle_digest(copy) != first.digest


def test_different_content_gives_another_bundle(ws: Workspace, source: Path, model_file: Path) -> None:
    base, _ = _assemble(ws, _plan(ws, source))
    with_deps, _ = _assemble(ws, _plan(ws, source, pip=["six"]))
    (source / "score.py").write_text(SCORE_PY + "# changed\n")
    new_code, _ = _assemble(ws, _plan(ws, source))
    ws.register_model("m", path=model_file)  # m:2, same bytes but another version
    new_model, _ = _assemble(ws, _plan(ws, source))
    digests = {base.digest, with_deps.digest, new_code.digest, new_model.digest}
    assert len(digests) == 4
    assert sorted(p.name for p in bundles_dir().iterdir()) == sorted(digests)


def test_extra_files_and_multiple_models(ws: Workspace, source: Path, tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "classes.json").write_text("[0, 1]")
    single = tmp_path / "vocab.txt"
    single.write_text("a b c")
    second_model = tmp_path / "second"
    second_model.mkdir()
    (second_model / "a.bin").write_bytes(b"\x00\x01")
    (second_model / "sub").mkdir()
    (second_model / "sub" / "b.bin").write_bytes(b"\x02")
    ws.register_model("second", path=second_model)
    plan = _plan(ws, source, models=["second:1", "m"], extra_files=[str(folder), str(single)])
    bundle, _ = _assemble(ws, plan)
    root = bundle.path
    assert (root / "app" / "labels" / "classes.json").read_text() == "[0, 1]"
    assert (root / "app" / "vocab.txt").read_text() == "a b c"
    assert (root / "models" / "second" / "1" / "a.bin").read_bytes() == b"\x00\x01"
    assert (root / "models" / "second" / "1" / "sub" / "b.bin").read_bytes() == b"\x02"
    models = json.loads((root / "image.json").read_text())["models"]
    assert models == [
        {"name": "second", "version": 1, "path": "models/second/1"},
        {"name": "m", "version": 1, "path": "models/m/1"},
    ]


def test_a_model_changed_in_the_datastore_is_refused(ws: Workspace, source: Path) -> None:
    plan = _plan(ws, source)
    model = ws.get_model("m")
    # Rewritten through the datastore, so the object and its sidecar agree: only the digest
    # recorded at registration can tell.
    ws.get_datastore(model.record.datastore).write_bytes(f"{model.record.path}/model.txt", b"tampered\n")
    with pytest.raises(IntegrityError, match=r"Model 'm' version 1: the files downloaded have tree SHA-256"):
        _assemble(ws, plan)
    assert not any(p.name.startswith(".tmp-") for p in bundles_dir().iterdir())  # no half bundle left
