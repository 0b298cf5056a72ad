from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_aml.exceptions import ModelNotFoundError, ValidationError
from airflow_aml.runtime.model import ENV_BUNDLE_DIR, Model, get_model_path
from tests.unit.runtime.scoring.conftest import BundleFactory


def test_latest_version_by_default_and_a_single_file_is_the_path(
    make_bundle: BundleFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(builtin="sklearn", versions=(1, 3, 2))
    # The builtin bundle lists only the last version; list them all, as a script image would.
    manifest = json.loads((bundle / "image.json").read_text())
    manifest["models"] = [{"name": "iris", "version": v, "path": f"models/iris/{v}"} for v in (1, 3, 2)]
    (bundle / "image.json").write_text(json.dumps(manifest))
    monkeypatch.setenv(ENV_BUNDLE_DIR, str(bundle))

    assert get_model_path("iris") == str(bundle.resolve() / "models/iris/3/model.pkl")
    assert get_model_path("iris", 1) == str(bundle.resolve() / "models/iris/1/model.pkl")
    assert Model.get_model_path("iris", version=2) == str(bundle.resolve() / "models/iris/2/model.pkl")


def test_a_folder_with_several_files_is_returned_as_the_folder(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(builtin="sklearn")
    (bundle / "models/iris/1/extra.txt").write_text("x")
    assert get_model_path("iris", bundle_dir=bundle) == str(bundle.resolve() / "models/iris/1")


def test_unknown_model_and_version_name_what_is_there(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(script="def run(raw): return raw", versions=(1, 2))
    with pytest.raises(ModelNotFoundError, match=r"'wine' is not in the image bundle .*models in it: iris"):
        get_model_path("wine", bundle_dir=bundle)
    with pytest.raises(ModelNotFoundError, match=r"'iris' version 7 .*versions available: 1, 2"):
        get_model_path("iris", 7, bundle_dir=bundle)


def test_without_manifest_the_folders_are_the_listing(tmp_path: Path) -> None:
    (tmp_path / "models/iris/4").mkdir(parents=True)
    (tmp_path / "models/iris/4/model.onnx").write_bytes(b"onnx")
    assert get_model_path("iris", bundle_dir=tmp_path) == str(tmp_path.resolve() / "models/iris/4/model.onnx")


def test_needs_the_bundle_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BUNDLE_DIR, raising=False)
    with pytest.raises(ValidationError, match=ENV_BUNDLE_DIR):
        get_model_path("iris")


def test_a_manifest_path_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "image.json").write_text(json.dumps({
        "name": "x", "version": 1, "models": [{"name": "iris", "version": 1, "path": "../../etc"}],
    }))
    with pytest.raises(ValidationError, match="leaves the bundle"):
        get_model_path("iris", bundle_dir=tmp_path)


def test_a_broken_manifest_is_named(tmp_path: Path) -> None:
    (tmp_path / "image.json").write_text('{"models": [{"name": "iris"}]}')
    with pytest.raises(ValidationError, match="cannot read image.json"):
        get_model_path("iris", bundle_dir=tmp_path)
