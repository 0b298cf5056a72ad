"""``mlflow.sklearn.autolog()`` training against our service, read back through our SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from airflow_aml.entities import RunStatus
from tests.unit.service.mlflow.conftest import Tracking


@pytest.fixture
def autolog() -> Iterator[None]:
    mlflow.sklearn.autolog(log_models=False, silent=False)
    yield
    mlflow.sklearn.autolog(disable=True)


def test_sklearn_autolog_lands_in_our_run(tracking: Tracking, autolog: None, caplog: pytest.LogCaptureFixture) -> None:
    X, y = load_iris(return_X_y=True)
    mlflow.set_experiment("auto")
    with caplog.at_level(logging.WARNING, logger="mlflow"), mlflow.start_run() as active:
        LogisticRegression(max_iter=300, C=0.5).fit(X, y)
    # Autologging logs its own failed calls as a warning and goes on: none may occur.
    assert [record.getMessage() for record in caplog.records if "autologging" in record.getMessage()] == []

    run = tracking.workspace.get_run(active.info.run_id)
    assert run.get_status() == RunStatus.COMPLETED
    assert run.record.params["C"] == "0.5" and run.record.params["max_iter"] == "300"
    metrics = run.get_metrics()
    assert 0.9 < metrics["training_accuracy_score"] <= 1.0, metrics
    # (training_log_loss is missing under pytest: sklearn warns inside it, and warnings are errors here)
    assert {"training_f1_score", "training_roc_auc", "training_score"} <= metrics.keys(), sorted(metrics)
    assert run.record.tags["estimator_name"] == "LogisticRegression"
    assert "outputs/training_confusion_matrix.png" in run.get_file_names()
    # The training data was logged as a dataset input, and reads back as one.
    inputs = MlflowClient().get_run(active.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest
    assert {tag.key: tag.value for tag in inputs[0].tags}["mlflow.data.context"] == "train"


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
def test_sklearn_autolog_with_its_model(tracking: Tracking, caplog: pytest.LogCaptureFixture) -> None:
    mlflow.sklearn.autolog(silent=False)  # the default: the fitted model is logged too
    try:
        X, y = load_iris(return_X_y=True)
        mlflow.set_experiment("auto")
        with caplog.at_level(logging.WARNING, logger="mlflow"), mlflow.start_run() as active:
            fitted = LogisticRegression(max_iter=300).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    assert [record.getMessage() for record in caplog.records if "autologging" in record.getMessage()] == []
    run_id = active.info.run_id
    assert "outputs/model/MLmodel" in tracking.workspace.get_run(run_id).get_file_names()
    [logged] = MlflowClient().search_logged_models(experiment_ids=["auto"], filter_string="name = 'model'")
    assert logged.source_run_id == run_id
    loaded = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    assert (loaded.predict(X) == fitted.predict(X)).all()
    # Its metrics are the run's, once each (log_model's copies for the model are not doubled).
    assert all(not isinstance(value, list) for value in tracking.workspace.get_run(run_id).get_metrics().values())
