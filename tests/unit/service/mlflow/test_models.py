"""``log_model`` (MLflow 3's logged models) and ``register_model`` into our model registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.unit.service.mlflow.conftest import Tracking

# MLflow's own advice while it saves a model without a signature (colored, hence the leading .*).
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning"),
    # log_model infers the model's requirements by walking loaded modules; when Airflow is loaded
    # (other tests of the run), touching its deprecated attributes warns. Not this code's warning.
    pytest.mark.filterwarnings("ignore:The `airflow.:Warning"),
]


def _train() -> LogisticRegression:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(X, y)


def test_log_model_and_register_model_land_in_our_registry(tracking: Tracking, tmp_path: Path) -> None:
    model = _train()
    mlflow.set_experiment("models")
    # A version registered with our SDK first: MLflow's registration must be the next one.
    with mlflow.start_run() as first:
        mlflow.log_text("x", "weights/x.txt")
    tracking.workspace.register_model("iris", run_id=first.info.run_id, run_path="outputs/weights")
    with mlflow.start_run() as active:
        mlflow.log_metric("acc", 0.97)
        info = mlflow.sklearn.log_model(model, name="model")
        run_id = active.info.run_id
    assert info.model_id.startswith(f"m-{run_id}-")
    logged = MlflowClient().get_logged_model(info.model_id)
    assert logged.source_run_id == run_id and logged.name == "model" and logged.experiment_id == "models"
    files = tracking.workspace.get_run(run_id).get_file_names()
    assert {"outputs/model/MLmodel", "outputs/model/requirements.txt"} <= set(files), files
    assert not any(key.startswith("mlflow.loggedModel") for key in MlflowClient().get_run(run_id).data.tags)
    assert tracking.workspace.get_run(run_id).get_metrics() == {"acc": 0.97}  # not doubled by log_model

    version = mlflow.register_model(f"runs:/{run_id}/model", "iris")
    assert version.version == "2" and version.run_id == run_id and version.status == "READY"
    ours = tracking.workspace.get_model("iris")
    assert ours.version == 2 and ours.record.run_id == run_id and ours.record.created_by == "alice"
    assert ours.record.properties["mlflow.model_id"] == info.model_id
    folder = ours.download(tmp_path / "ours")  # checked against the SHA-256 of the registration
    assert "flavors:" in (folder / "MLmodel").read_text()

    # The registered model loads back through MLflow and predicts as the trained one.
    loaded = mlflow.sklearn.load_model("models:/iris/2")
    X, _ = load_iris(return_X_y=True)
    assert (loaded.predict(X) == model.predict(X)).all()
    assert MlflowClient().get_registered_model("iris").latest_versions[0].version == "2"
    again = mlflow.register_model(f"models:/{info.model_id}", "iris")
    assert again.version == "3" and tracking.workspace.get_model("iris").version == 3


def test_a_model_outside_a_run_is_refused(tracking: Tracking) -> None:
    mlflow.set_experiment("models")
    with pytest.raises(MlflowException) as refused:
        mlflow.sklearn.log_model(_train(), name="model")  # no active run
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and "inside a run" in str(refused.value)
