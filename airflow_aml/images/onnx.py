"""``convert_to_onnx``: a registered scikit-learn model turned into ``model.onnx`` while its image's
bundle is assembled, so that the built-in ``onnx`` scorer serves it with onnxruntime.

The conversion runs where the build runs (skl2onnx is needed there, not in the image); the
registered model version stays the pickle it was. Classifiers are converted without skl2onnx's
ZipMap, so the probabilities come back as rows of numbers, as ``predict_proba`` gives them, and
both scorers answer the same JSON. ``check_conversion`` compares the two on rows made from the
model's own feature count before the bundle is published: a model that converts to something
that predicts differently fails the build instead of being served.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any

from airflow_aml.exceptions import ImageBuildError, ValidationError

PICKLE_NAMES = ("model.pkl", "model.joblib")
PICKLE_SUFFIXES = (".pkl", ".joblib", ".pickle")
ONNX_NAME = "model.onnx"
CHECK_ROWS = 64


def require_converter(image: str) -> None:
    """ValidationError before anything is created when this machine cannot convert."""
    missing = [name for name in ("skl2onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValidationError(
            f"Image {image!r}: convert_to_onnx needs {' and '.join(missing)} where the image is built "
            "(pip install 'airflow-aml[onnx]')"
        )


def _pickle_in(folder: Path) -> Path:
    for name in PICKLE_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if len(found) != 1:
        raise ImageBuildError(
            f"convert_to_onnx: expected one scikit-learn model file ({'/'.join(PICKLE_SUFFIXES)}) in the model "
            f"version, found {len(found) or 'none'}"
        )
    return found[0]


def _load(path: Path) -> Any:
    # The registered model is trusted like the image's own code (what the sklearn scorer loads too).
    try:
        import joblib

        return joblib.load(path)
    except ImportError:
        with path.open("rb") as handle:
            return pickle.load(handle)


def convert_model_folder(folder: Path) -> tuple[str, str]:
    """Write ``folder/model.onnx`` from the one scikit-learn model in ``folder`` and remove the
    pickle (the bundle then holds one model file, which the onnx scorer finds). Returns (the
    pickle's name, a one-line description) for the build log."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.base import is_classifier

    path = _pickle_in(folder)
    model = _load(path)
    n_features = getattr(model, "n_features_in_", None)
    if not callable(getattr(model, "predict", None)) or n_features is None:
        raise ImageBuildError(
            f"convert_to_onnx: {path.name} holds a {type(model).__name__}, not a fitted scikit-learn model"
        )
    sample = np.zeros((1, int(n_features)), dtype=np.float32)
    options = {"zipmap": False} if is_classifier(model) else None
    try:
        onnx_model = to_onnx(model, sample, options=options, target_opset=None)
    except Exception as exc:  # skl2onnx raises many kinds for what it cannot convert
        raise ImageBuildError(f"convert_to_onnx: skl2onnx cannot convert {type(model).__name__}: {exc}") from exc
    (folder / ONNX_NAME).write_bytes(onnx_model.SerializeToString())
    check_conversion(model, folder / ONNX_NAME, int(n_features))
    path.unlink()
    return path.name, f"{type(model).__name__} with {n_features} features"


def check_conversion(model: Any, onnx_path: Path, n_features: int) -> None:
    """The ONNX model predicts what the scikit-learn model does on rows drawn around the origin at
    several scales: numbers to float32 precision, labels exactly except where the scikit-learn
    model itself is at a near tie (ONNX computes in float32); ImageBuildError otherwise."""
    import numpy as np
    import onnxruntime

    rng = np.random.default_rng(0)
    scales = np.repeat([0.1, 1.0, 10.0, 100.0], CHECK_ROWS // 4)[:, None]
    rows = (rng.standard_normal((CHECK_ROWS, n_features)) * scales).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: rows})
    expected = np.asarray(model.predict(rows))
    got = np.asarray(outputs[0]).reshape(expected.shape)
    if expected.dtype.kind == "f":
        wrong = ~np.isclose(expected, got, rtol=1e-3, atol=1e-4)
    else:
        wrong = expected.astype(str) != got.astype(str)
        if wrong.any() and hasattr(model, "predict_proba"):
            top2 = np.sort(np.asarray(model.predict_proba(rows)), axis=1)[:, -2:]
            wrong &= (top2[:, 1] - top2[:, 0]) > 1e-3  # not a tie that float32 may break the other way
    if wrong.any():
        raise ImageBuildError(
            f"convert_to_onnx: the ONNX model predicts differently from {type(model).__name__} "
            f"({int(wrong.sum())} of {CHECK_ROWS} check rows)"
        )
