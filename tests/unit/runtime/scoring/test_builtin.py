"""The built-in scorers beyond what test_app covers: ONNX (with a stand-in onnxruntime), model files."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_aml.runtime.scoring.builtin import OnnxScorer, SklearnScorer, find_model_file
from airflow_aml.runtime.scoring.errors import ScorerSetupError
from tests.unit.runtime.scoring.conftest import ROW, BundleFactory


def _onnx_bundle(make_bundle: BundleFactory) -> Path:
    bundle = make_bundle(builtin="sklearn")
    manifest = json.loads((bundle / "image.json").read_text())
    manifest["builtin_scorer"] = "onnx"
    (bundle / "image.json").write_text(json.dumps(manifest))
    folder = bundle / "models/iris/1"
    (folder / "model.pkl").unlink()
    (folder / "model.onnx").write_bytes(b"not really onnx")
    return bundle


class _FakeSession:
    """What skl2onnx makes of a classifier: labels, then a ZipMap of probabilities."""

    def __init__(self, path: str, providers: list[str]) -> None:
        assert path.endswith("model.onnx") and providers == ["CPUExecutionProvider"]

    def get_inputs(self) -> list[Any]:
        return [types.SimpleNamespace(name="float_input", type="tensor(float)", shape=["N", 4])]

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[Any]:
        rows = feeds["float_input"]
        assert rows.dtype == np.float32
        return [np.zeros(len(rows), dtype=np.int64), [{0: 0.9, 1: 0.1, 2: 0.0} for _ in rows]]


def test_onnx_scorer_with_onnxruntime(make_bundle: BundleFactory, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=_FakeSession))
    client = serve(_onnx_bundle(make_bundle))
    response = client.post("/score", json={"data": [ROW, ROW]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0, 0], "probabilities": [{"0": 0.9, "1": 0.1, "2": 0.0}] * 2}
    assert client.post("/score", json={"data": [[1.0]]}).status_code == 400  # 4 features, from the input shape


def test_onnx_without_onnxruntime_says_so_in_ready(
    make_bundle: BundleFactory, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    client = serve(_onnx_bundle(make_bundle))
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


def test_onnx_scorer_plain_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=_FakeSession))
    (tmp_path / "model.onnx").write_bytes(b"x")
    scorer = OnnxScorer(tmp_path)
    scorer.init()
    assert scorer.run("", {"data": [[1, 2, 3, 4]]})["predictions"] == [0]  # ints cast to the input's float32
