"""The built-in scorers beyond what test_app covers: ONNX (a model converted by skl2onnx, run by the real
onnxruntime), model files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_aml.runtime.scoring.builtin import SklearnScorer, find_model_file
from airflow_aml.runtime.scoring.errors import ScorerSetupError
from tests.unit.runtime.scoring.conftest import ROW, BundleFactory


def _onnx_bundle(make_bundle: BundleFactory, iris_model: Any, *, zipmap: bool = False) -> Path:
    """The sklearn bundle with its model converted by skl2onnx (as convert_to_onnx does, or with
    skl2onnx's default ZipMap, as a user who converts by hand often does)."""
    from skl2onnx import to_onnx

    bundle = make_bundle(builtin="sklearn")
    manifest = json.loads((bundle / "image.json").read_text())
    manifest["builtin_scorer"] = "onnx"
    (bundle / "image.json").write_text(json.dumps(manifest))
    folder = bundle / "models/iris/1"
    (folder / "model.pkl").unlink()
    options = None if zipmap else {"zipmap": False}
    onnx_model = to_onnx(iris_model, np.zeros((1, 4), dtype=np.float32), options=options)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    return bundle


ROWS = [ROW, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]  # setosa, virginica, versicolor


def test_onnx_scorer_answers_what_the_sklearn_model_does(
    make_bundle: BundleFactory, serve: Any, iris_model: Any
) -> None:
    client = serve(_onnx_bundle(make_bundle, iris_model))
    response = client.post("/score", json={"data": ROWS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == iris_model.predict(np.array(ROWS)).tolist() == [0, 2, 1]
    assert np.allclose(body["probabilities"], iris_model.predict_proba(np.array(ROWS)), atol=1e-5)
    # 4 features, read from the ONNX input's shape; integers are cast to its float32.
    assert client.post("/score", json={"data": [[1.0]]}).status_code == 400
    assert client.post("/score", json={"data": [[5, 3, 1, 0]]}).json()["predictions"] == [0]


def test_onnx_scorer_with_a_zipmap_gives_labelled_probabilities(
    make_bundle: BundleFactory, serve: Any, iris_model: Any
) -> None:
    client = serve(_onnx_bundle(make_bundle, iris_model, zipmap=True))
    body = client.post("/score", json={"data": ROWS[:1]}).json()
    assert body["predictions"] == [0]
    [probabilities] = body["probabilities"]
    assert set(probabilities) == {"0", "1", "2"} and probabilities["0"] > 0.9


def test_onnx_without_onnxruntime_says_so_in_ready(
    make_bundle: BundleFactory, serve: Any, iris_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    client = serve(_onnx_bundle(make_bundle, iris_model))
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert "needs the onnxruntime package" in ready.json()["error"]


def test_find_model_file_prefers_names_then_a_single_match(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clf.joblib").write_bytes(b"x")
    assert find_model_file(tmp_path, ("model.pkl",), (".pkl", ".joblib")) == tmp_path / "sub" / "clf.joblib"
    (tmp_path / "other.pkl").write_bytes(b"x")
    with pytest.raises(ScorerSetupError, match=r"found 2 \(other.pkl, sub/clf.joblib\)"):
        find_model_file(tmp_path, ("model.pkl",), (".pkl", ".joblib"))
    (tmp_path / "model.pkl").write_bytes(b"x")
    assert find_model_file(tmp_path, ("model.pkl",), (".pkl",)) == tmp_path / "model.pkl"
    with pytest.raises(ScorerSetupError, match="found no"):
        find_model_file(tmp_path, (), (".onnx",))


def test_sklearn_scorer_reads_joblib_dumps_and_refuses_non_models(tmp_path: Path, iris_model: Any) -> None:
    import joblib

    joblib.dump(iris_model, tmp_path / "model.pkl")  # the Azure samples' way of saving a .pkl
    scorer = SklearnScorer(tmp_path)
    scorer.init()
    assert scorer.run("", {"data": [ROW]})["predictions"] == [0]

    other = tmp_path / "other"
    other.mkdir()
    joblib.dump({"not": "a model"}, other / "model.pkl")
    with pytest.raises(ScorerSetupError, match="has no predict"):
        SklearnScorer(other).init()
