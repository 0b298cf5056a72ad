"""The no-code scorers: a registered scikit-learn or ONNX model served without a scoring script.

Both take ``{"data": [[feature, ...], ...]}`` and answer ``{"predictions": [...]}`` (plus
``probabilities`` when the model gives them). This module is imported only when ``image.json``
names a built-in scorer, so numpy, joblib and onnxruntime stay out of script-based images.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from airflow_aml.runtime.scoring.errors import ScorerSetupError, ScoringInputError

_BODY_SHAPE = 'The body must be a JSON object {"data": [[feature, ...], ...]}'


def rows_from_payload(payload: Any, n_features: int | None) -> np.ndarray:
    """The ``data`` rows as a 2-D numeric array, or a ``ScoringInputError`` that says what is wrong."""
    if not isinstance(payload, dict) or "data" not in payload:
        raise ScoringInputError(_BODY_SHAPE)
    data = payload["data"]
    if not isinstance(data, list):
        raise ScoringInputError(f'"data" must be a list of rows, not {type(data).__name__}. {_BODY_SHAPE}')
    if not data:
        raise ScoringInputError('"data" is empty: send at least one row')
    # numpy checks shape and types in C: this is the hot path of every request.
    try:
        rows = np.asarray(data)
    except ValueError as exc:  # ragged rows
        raise ScoringInputError(f'"data" must be rows of equal length: {exc}') from exc
    if rows.ndim != 2:
        hint = " (for one row, send [[...]])" if rows.ndim == 1 else ""
        raise ScoringInputError(f'"data" must be a list of rows (2-D), got {rows.ndim}-D{hint}')
    if rows.dtype.kind not in "iuf":
        raise ScoringInputError('"data" must hold only numbers')
    if n_features is not None and rows.shape[1] != n_features:
        raise ScoringInputError(f"Each row must have {n_features} features, got {rows.shape[1]}")
    return rows


def stacked_rows(items: list[tuple[str, Any]], n_features: int | None) -> tuple[np.ndarray, list[int]]:
    """Every request's rows in one array, and where each request's rows end (for ``np.split``)."""
    parts = [rows_from_payload(payload, n_features) for _, payload in items]
    if n_features is None and len({part.shape[1] for part in parts}) > 1:
        raise ScoringInputError("The requests of a batch have different numbers of features")
    ends = np.cumsum([len(part) for part in parts])[:-1].tolist()
    return np.concatenate(parts), ends


def split_results(result: dict[str, Any], ends: list[int], n_rows: int) -> list[dict[str, Any]]:
    """A batch's ``{"predictions": [...], ...}`` back into one such answer per request.

    Every output must hold one value per row: anything else cannot be split honestly, and raises
    (the requests are then scored one at a time)."""
    bounds = list(zip([0, *ends], [*ends, n_rows], strict=True))
    answers: list[dict[str, Any]] = [{} for _ in bounds]
    for name, values in result.items():
        if not hasattr(values, "__len__") or len(values) != n_rows:
            raise ScoringInputError(f"The model's {name} are not one per row: the batch cannot be split")
        for answer, (start, end) in zip(answers, bounds, strict=True):
            answer[name] = _plain(values[start:end])
    return answers


def find_model_file(model_dir: Path, preferred: tuple[str, ...], suffixes: tuple[str, ...]) -> Path:
    """The one model file in a registered model's folder (the folder may be the file itself)."""
    if model_dir.is_file():
        return model_dir
    if not model_dir.is_dir():
        raise ScorerSetupError(f"Model folder {str(model_dir)!r} is missing from the bundle")
    for name in preferred:
        if (model_dir / name).is_file():
            return model_dir / name
    found = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        listed = ", ".join(str(p.relative_to(model_dir)) for p in found)
        raise ScorerSetupError(
            f"Model folder {str(model_dir)!r}: expected one {'/'.join(suffixes)} file, found {what}"
            + (f" ({listed})" if listed else "")
        )
    return found[0]


class SklearnScorer:
    """Any object with ``predict`` (and maybe ``predict_proba``), unpickled from the model folder.

    The pickle is the model the workspace registered and baked into the image, which is trusted
    like the image's code; request bodies are JSON and are never unpickled.
    """

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.model: Any = None
        self._n_features: int | None = None
        self._has_proba = False

    def init(self) -> None:
        path = find_model_file(self.model_dir, ("model.pkl", "model.joblib"), (".pkl", ".joblib", ".pickle"))
        try:
            import joblib  # reads plain pickles too, and the joblib.dump("model.pkl") of most samples

            self.model = joblib.load(path)
        except ImportError:
            with path.open("rb") as handle:
                self.model = pickle.load(handle)
        if not callable(getattr(self.model, "predict", None)):
            raise ScorerSetupError(f"{path.name}: {type(self.model).__name__} has no predict() method")
        n_features = getattr(self.model, "n_features_in_", None)
        self._n_features = int(n_features) if n_features is not None else None
        self._has_proba = hasattr(self.model, "predict_proba")  # False also when available_if hides it

    supports_batches = True

    def run(self, raw_data: str, payload: Any) -> dict[str, Any]:
        rows = rows_from_payload(payload, self._n_features)
        result: dict[str, Any] = {"predictions": self.model.predict(rows).tolist()}
        if self._has_proba:
            result["probabilities"] = self.model.predict_proba(rows).tolist()
        return result

    def run_batch(self, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """One ``predict`` (and ``predict_proba``) over the rows of every request."""
        rows, ends = stacked_rows(items, self._n_features)
        result: dict[str, Any] = {"predictions": self.model.predict(rows)}
        if self._has_proba:
            result["probabilities"] = self.model.predict_proba(rows)
        return split_results(result, ends, len(rows))


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


class OnnxScorer:
    """An ONNX model run with onnxruntime (an optional package: the image installs it)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._session: Any = None
        self._input_name = ""
        self._dtype: Any = np.float32
        self._n_features: int | None = None

    def init(self) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ScorerSetupError(
                "The built-in 'onnx' scorer needs the onnxruntime package, which is not installed in this "
                "image (pip install onnxruntime)"
            ) from exc
        path = find_model_file(self.model_dir, ("model.onnx",), (".onnx",))
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self._dtype = _ONNX_TYPES.get(first.type, np.float32)
        shape = list(first.shape or [])
        self._n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None

    supports_batches = True

    def run(self, raw_data: str, payload: Any) -> dict[str, Any]:
        rows = rows_from_payload(payload, self._n_features).astype(self._dtype, copy=False)
        outputs = self._session.run(None, {self._input_name: rows})
        result: dict[str, Any] = {"predictions": _plain(outputs[0])}
        if len(outputs) > 1:  # converted classifiers: labels, then probabilities
            result["probabilities"] = _plain(outputs[1])
        return result

    def run_batch(self, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """One ``session.run`` over the rows of every request (the model's batch axis is free)."""
        rows, ends = stacked_rows(items, self._n_features)
        outputs = self._session.run(None, {self._input_name: rows.astype(self._dtype, copy=False)})
        result: dict[str, Any] = {"predictions": outputs[0]}
        if len(outputs) > 1:
            result["probabilities"] = outputs[1]
        return split_results(result, ends, len(rows))


def _plain(value: Any) -> Any:
    """numpy arrays and skl2onnx's ZipMap (a list of {label: probability}) as JSON-ready values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [{str(k): float(v) for k, v in item.items()} if isinstance(item, dict) else _plain(item)
                for item in value]
    return value
