"""``convert_to_onnx``: real scikit-learn models converted by skl2onnx and run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from airflow_aml.exceptions import ImageBuildError, ValidationError
from airflow_aml.images import onnx as onnx_module
from airflow_aml.images.onnx import check_conversion, convert_model_folder
from airflow_aml.images.spec import ImageSpec
from airflow_aml.runtime.scoring.builtin import OnnxScorer, SklearnScorer
from airflow_aml.workspace import Workspace
from tests.unit.images.conftest import FakeBuilder

IRIS_X, IRIS_Y = load_iris(return_X_y=True)


def _models() -> dict[str, Any]:
    diabetes_x, diabetes_y = load_diabetes(return_X_y=True)
    return {
        "logistic": LogisticRegression(max_iter=500).fit(IRIS_X, IRIS_Y),
        "forest": RandomForestClassifier(n_estimators=20, random_state=0).fit(IRIS_X, IRIS_Y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(IRIS_X, IRIS_Y),
        "ridge": Ridge().fit(diabetes_x, diabetes_y),
    }


@pytest.mark.parametrize("kind", ["logistic", "forest", "pipeline", "ridge"])
def test_converted_models_predict_what_the_originals_do(tmp_path: Path, kind: str) -> None:
    model = _models()[kind]
    joblib.dump(model, tmp_path / "model.pkl")
    name, what = convert_model_folder(tmp_path)
    assert name == "model.pkl" and type(model).__name__ in what
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # one model file left

    onnx_scorer = OnnxScorer(tmp_path)
    onnx_scorer.init()
    rows = (IRIS_X[::10] if kind != "ridge" else load_diabetes().data[::40]).tolist()
    got = onnx_scorer.run("", {"data": rows})
    expected = model.predict(np.array(rows, dtype=np.float32))
    if kind == "ridge":
        assert np.allclose(np.ravel(got["predictions"]), expected, rtol=1e-4)
    else:
        assert got["predictions"] == expected.tolist()
        # Rows of numbers, as predict_proba gives them (no ZipMap), so both scorers answer alike.
        assert np.allclose(got["probabilities"], model.predict_proba(np.array(rows, dtype=np.float32)), atol=1e-5)


def test_the_two_scorers_answer_the_same_json(tmp_path: Path) -> None:
    model = _models()["logistic"]
    (tmp_path / "sk").mkdir()
    (tmp_path / "onnx").mkdir()
    joblib.dump(model, tmp_path / "sk" / "model.pkl")
    joblib.dump(model, tmp_path / "onnx" / "model.pkl")
    convert_model_folder(tmp_path / "onnx")
    sklearn_scorer, onnx_scorer = SklearnScorer(tmp_path / "sk"), OnnxScorer(tmp_path / "onnx")
    sklearn_scorer.init()
    onnx_scorer.init()
    payload = {"data": IRIS_X[:5].tolist()}
    a, b = sklearn_scorer.run("", payload), onnx_scorer.run("", payload)
    assert a["predictions"] == b["predictions"] and np.allclose(a["probabilities"], b["probabilities"], atol=1e-5)


def test_what_cannot_be_converted_fails_the_build_saying_why(tmp_path: Path) -> None:
    joblib.dump({"not": "a model"}, tmp_path / "model.pkl")
    with pytest.raises(ImageBuildError, match="holds a dict, not a fitted scikit-learn model"):
        convert_model_folder(tmp_path)
    (tmp_path / "model.pkl").unlink()
    (tmp_path / "weights.txt").write_text("1 2 3\n")
    with pytest.raises(ImageBuildError, match="expected one scikit-learn model file"):
        convert_model_folder(tmp_path)


def test_a_conversion_that_predicts_differently_is_refused(tmp_path: Path) -> None:
    model = _models()["logistic"]
    joblib.dump(model, tmp_path / "model.pkl")
    convert_model_folder(tmp_path)
    other = LogisticRegression(max_iter=500).fit(IRIS_X, (IRIS_Y + 1) % 3)  # another model's labels
    with pytest.raises(ImageBuildError, match=r"predicts differently from LogisticRegression \(\d+ of 64"):
        check_conversion(other, tmp_path / "model.onnx", 4)


def test_spec_rules() -> None:
    ImageSpec(models=["m"], builtin_scorer="onnx", convert_to_onnx=True)
    with pytest.raises(ValueError, match="convert_to_onnx goes with builtin_scorer 'onnx'"):
        ImageSpec(models=["m"], builtin_scorer="sklearn", convert_to_onnx=True)


def test_image_with_convert_to_onnx(workspace: Workspace, tmp_path: Path, fake_builder: type[FakeBuilder],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "iris").mkdir()
    model = _models()["forest"]
    joblib.dump(model, tmp_path / "iris" / "model.pkl")
    workspace.register_model("iris", path=tmp_path / "iris")
    spec = {"models": ["iris"], "builtin_scorer": "onnx", "convert_to_onnx": True}
    image = workspace.create_image("iris-onnx", spec, builder="fake")
    bundle = Path(image.location or "")
    folder = bundle / "models" / "iris" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]
    assert "converted to model.onnx; its predictions checked against the original" in image.get_build_log()
    assert image.record.spec["convert_to_onnx"] is True
    # The registered version is untouched: still the pickle it was.
    assert workspace.get_model("iris", 1).download(tmp_path / "down").name == "model.pkl"
    scorer = OnnxScorer(folder)
    scorer.init()
    assert scorer.run("", {"data": IRIS_X[:3].tolist()})["predictions"] == model.predict(IRIS_X[:3]).tolist()

    # A machine without skl2onnx refuses before anything is created.
    monkeypatch.setattr(onnx_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValidationError, match="convert_to_onnx needs skl2onnx and onnxruntime"):
        workspace.create_image("iris-onnx", spec, builder="fake")
    assert [i.version for i in workspace.list_images(name="iris-onnx")] == [1]
