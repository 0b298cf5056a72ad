"""Model cost per request: the built-in ``onnx`` scorer (a model converted with ``convert_to_onnx``)
against the built-in ``sklearn`` scorer on the same model, in this one process.

Both scorers are the ones a deployment's replica runs (``airflow_aml.runtime.scoring.builtin``),
given the same JSON-decoded payloads: single rows (what most scoring requests are) and batches of
64 rows. This isolates the model's share of a request; the HTTP share is what
``benchmarks/serving.py`` measures. Both answer the same predictions (checked).

    python benchmarks/onnx_scoring.py [--model logistic|forest] [--seconds 2]

The last line is ``ratio: <sklearn time / onnx time, single row>x`` (above 1: ONNX is faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _model(kind: str) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    if kind == "forest":
        return RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y), x
    return LogisticRegression(max_iter=500).fit(x, y), x


def _time_per_call(scorer: Any, payloads: list[dict[str, Any]], seconds: float, max_calls: int) -> list[float]:
    """Microseconds per call, in rounds of all payloads, until ``seconds`` or ``max_calls``."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(samples) < max_calls:
        for payload in payloads:
            start = time.perf_counter()
            scorer.run("", payload)
            samples.append((time.perf_counter() - start) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("logistic", "forest"), default="logistic")
    parser.add_argument("--seconds", type=float, default=2.0, help="per scorer and payload size")
    args = parser.parse_args()

    import joblib

    from airflow_aml.images.onnx import convert_model_folder
    from airflow_aml.runtime.scoring.builtin import OnnxScorer, SklearnScorer

    model, x = _model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        sk_dir, onnx_dir = Path(tmp, "sklearn"), Path(tmp, "onnx")
        for folder in (sk_dir, onnx_dir):
            folder.mkdir()
            joblib.dump(model, folder / "model.pkl")
        convert_model_folder(onnx_dir)
        scorers = {"sklearn": SklearnScorer(sk_dir), "onnx": OnnxScorer(onnx_dir)}
        for scorer in scorers.values():
            scorer.init()

        single = [{"data": [row]} for row in x[:50].tolist()]
        batch = [{"data": x[i:i + 64].tolist()} for i in (0, 43, 86)]
        for a, b in zip(single + batch, single + batch, strict=True):
            assert scorers["sklearn"].run("", a)["predictions"] == scorers["onnx"].run("", b)["predictions"]

        p50: dict[tuple[str, str], float] = {}
        print(f"model: {type(model).__name__} ({args.model}), iris features, this process")
        print(f"{'scorer':8} {'payload':10} {'p50 us':>9} {'p99 us':>9} {'calls':>7}")
        for size, payloads in (("1 row", single), ("64 rows", batch)):
            for name, scorer in scorers.items():
                samples = _time_per_call(scorer, payloads, args.seconds, max_calls=200_000)
                samples.sort()
                p50[(name, size)] = statistics.median(samples)
                p99 = samples[int(len(samples) * 0.99) - 1]
                print(f"{name:8} {size:10} {p50[(name, size)]:9.1f} {p99:9.1f} {len(samples):7d}")
        batch_ratio = p50[("sklearn", "64 rows")] / p50[("onnx", "64 rows")]
        print(f"64-row batch: onnx {batch_ratio:.2f}x the speed of sklearn")
        print(f"ratio: {p50[('sklearn', '1 row')] / p50[('onnx', '1 row')]:.2f}x")


if __name__ == "__main__":
    main()
