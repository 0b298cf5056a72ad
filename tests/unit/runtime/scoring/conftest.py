"""Image bundles built in tmp_path with a real (tiny) scikit-learn model, and clients for them."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_aml.runtime.model import ENV_BUNDLE_DIR
from airflow_aml.runtime.scoring import ScoringConfig, create_app

ROW = [5.1, 3.5, 1.4, 0.2]  # an iris setosa

# A scoring script in the Azure ML style. The body's "sleep", "crash" and "touch" let tests make
# run() slow or fail, or see that it ran; labels.json is opened relative to the working directory, which must be app/.
SCORE_PY = """
import json
import pickle
import time

from airflow_aml.runtime.model import get_model_path

model = None
labels = None


def init():
    global model, labels
    with open(get_model_path("iris"), "rb") as handle:
        model = pickle.load(handle)
    with open("labels.json") as handle:
        labels = json.load(handle)


def run(raw_data):
    body = json.loads(raw_data)
    if body.get("touch"):  # leaves a trace that run() was called
        open(body["touch"], "w").close()
    if body.get("sleep"):
        time.sleep(body["sleep"])
    if body.get("crash"):
        raise ValueError("boom")
    predictions = model.predict(body["data"])
    return {"predictions": [labels[int(p)] for p in predictions]}
"""


@pytest.fixture(scope="session")
def iris_model() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, target)


@pytest.fixture(autouse=True)
def _process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service sets AML_BUNDLE_DIR for the script it serves and puts app/ on sys.path, as a
    # server process should; monkeypatch puts both back after each test.
    monkeypatch.setenv(ENV_BUNDLE_DIR, "")
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")
    monkeypatch.setattr(sys, "path", sys.path.copy())


BundleFactory = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path: Path, iris_model: Any) -> BundleFactory:
    """``make_bundle(script=SCORE_PY)`` or ``make_bundle(builtin="sklearn")``: a bundle folder."""
    count = 0

    def make(
        *, script: str | None = None, builtin: str | None = None, versions: tuple[int, ...] = (1,),
        input_schema: dict[str, Any] | None = None,
    ) -> Path:
        nonlocal count
        count += 1
        bundle = tmp_path / f"bundle{count}"
        models = []
        for version in versions:
            folder = bundle / "models" / "iris" / str(version)
            folder.mkdir(parents=True)
            (folder / "model.pkl").write_bytes(pickle.dumps(iris_model))
            models.append({"name": "iris", "version": version, "path": f"models/iris/{version}"})
        app_dir = bundle / "app"
        app_dir.mkdir(parents=True)
        (app_dir / "labels.json").write_text(json.dumps(["setosa", "versicolor", "virginica"]))
        if script is not None:
            (app_dir / "score.py").write_text(textwrap.dedent(script))
        manifest = {
            "name": "iris-image", "version": 1, "entry_script": "score.py" if script is not None else None,
            "builtin_scorer": builtin, "models": models if builtin is None else models[-1:],
            "input_schema": input_schema, "output_schema": None,
        }
        (bundle / "image.json").write_text(json.dumps(manifest))
        return bundle

    return make


@pytest.fixture
def serve() -> Iterator[Callable[..., TestClient]]:
    """``serve(bundle, config)``: a started TestClient whose init() has ended; closed at teardown."""
    clients: list[TestClient] = []

    def start(bundle: Path, config: ScoringConfig | None = None, **kwargs: Any) -> TestClient:
        if config is None and "config_path" not in kwargs:
            config = ScoringConfig(auth_enabled=False)
        app = create_app(bundle, config, **kwargs)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        app.state.scoring.wait_initialized(30)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)
