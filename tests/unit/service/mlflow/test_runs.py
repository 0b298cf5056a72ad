"""Experiments, runs, metrics, params and tags logged by the real MLflow client, read back
through our SDK (and the other way round)."""

from __future__ import annotations

import math
import os

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airflow_aml.entities import RunStatus
from tests.unit.service.mlflow.conftest import WS, Tracking


def test_logging_with_the_mlflow_client_lands_in_our_run(tracking: Tracking) -> None:
    experiment_id = mlflow.set_experiment("iris").experiment_id
    assert experiment_id == "iris"
    with mlflow.start_run(run_name="first") as active:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"epochs": 3, "optimizer": "adam"})
        for step, loss in enumerate((0.9, 0.5, 0.25)):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metrics({"acc": 0.8, "f1": 0.7}, step=2)
        mlflow.set_tag("team", "ml")
        mlflow.set_tags({"data": "v2"})
        run_id = active.info.run_id

    run = tracking.workspace.get_run(run_id)
    assert run.get_status() == RunStatus.COMPLETED and run.experiment == "iris"
    assert run.get_metrics() == {"loss": [0.9, 0.5, 0.25], "acc": 0.8, "f1": 0.7}
    assert run.record.params == {"lr": "0.1", "epochs": "3", "optimizer": "adam"}
    assert run.record.submitted_by == "alice" and run.record.display_name == "first"
    tags = run.record.tags
    assert tags["team"] == "ml" and tags["data"] == "v2" and tags["mlflow.runName"] == "first"
    assert "mlflow.user" not in tags  # the submitter is the token's principal, not the client's login

    fetched = MlflowClient().get_run(run_id)
    assert fetched.info.status == "FINISHED" and fetched.info.run_name == "first"
    assert fetched.info.experiment_id == "iris" and fetched.info.user_id == "alice"
    assert fetched.data.metrics == {"loss": 0.25, "acc": 0.8, "f1": 0.7}
    assert fetched.data.params == {"lr": "0.1", "epochs": "3", "optimizer": "adam"}
    assert fetched.data.tags["mlflow.user"] == "alice"
    assert fetched.info.end_time >= fetched.info.start_time > 0


def test_metric_history_and_log_batch(tracking: Tracking) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment("batch")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=[mlflow.entities.Metric("m", float(i), 1_700_000_000_000 + i, i)
                                      for i in range(5)],
                     params=[mlflow.entities.Param("p", "1")], tags=[mlflow.entities.RunTag("t", "x")])
    client.log_metric(run_id, "m", math.nan, step=5)
    history = client.get_metric_history(run_id, "m")
    assert [(m.step, m.timestamp) for m in history[:5]] == [(i, 1_700_000_000_000 + i) for i in range(5)]
    assert [m.value for m in history[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0] and math.isnan(history[5].value)
    client.set_terminated(run_id, status="FAILED")
    run = tracking.workspace.get_run(run_id)
    assert run.get_status() == RunStatus.FAILED
    assert client.get_run(run_id).data.params == {"p": "1"}


def test_errors_come_in_mlflow_codes(tracking: Tracking) -> None:
    client = MlflowClient()
    assert client.get_experiment_by_name("nope") is None  # RESOURCE_DOES_NOT_EXIST, which the client maps
    client.create_experiment("twice")
    with pytest.raises(MlflowException) as exists:
        client.create_experiment("twice")
    assert exists.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    run_id = client.create_run("twice").info.run_id
    client.log_param(run_id, "p", "1")
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "p", "2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    # The client splits a larger batch itself: MLflow's limit shows on a raw request.
    metrics = [{"key": "m", "value": 1.0, "timestamp": 0, "step": i} for i in range(1001)]
    too_many = httpx.post(f"{tracking.uri}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics},
                          headers={"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"})
    assert too_many.status_code == 400
    assert too_many.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "at most 1000 metrics" in too_many.json()["message"]
    assert client.get_metric_history(run_id, "m") == []  # nothing of the refused batch was written
    anonymous = httpx.get(f"{tracking.uri}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"


def test_a_readers_token_reads_but_does_not_write(tracking: Tracking, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("shared")).info.run_id
    tracking.as_principal("rita", monkeypatch)
    assert client.get_run(run_id).info.run_id == run_id
    for write in (lambda: client.log_metric(run_id, "m", 1.0), lambda: client.log_param(run_id, "p", "1"),
                  lambda: client.set_tag(run_id, "t", "v"), lambda: client.create_run("shared"),
                  lambda: client.create_experiment("mine"), lambda: client.set_terminated(run_id)):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.error_code == "PERMISSION_DENIED", refused.value
    tracking.as_principal("stranger", monkeypatch)  # no role in the workspace at all
    with pytest.raises(MlflowException) as stranger:
        client.get_run(run_id)
    assert stranger.value.error_code == "PERMISSION_DENIED"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "aml_pat_not-a-token")
    with pytest.raises(MlflowException) as unknown:
        client.get_run(run_id)
    assert unknown.value.error_code == "UNAUTHENTICATED"


def test_a_run_token_logs_into_its_own_run(tracking: Tracking, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a run we launch: MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_NAME name our run and its
    experiment, the run token is the tracking token."""
    from airflow_aml.service.tokens import mint_run_token

    run = tracking.workspace.experiment("launched").start_logging()
    other = tracking.workspace.experiment("launched").start_logging()
    token, _ = mint_run_token(tracking.served.tokens, principal="alice", workspace=WS, run_id=run.id,
                              secrets_allowed=[])
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "launched")
    with mlflow.start_run() as active:  # resumes our run
        assert active.info.run_id == run.id
        mlflow.log_metric("loss", 0.5)
        mlflow.log_param("lr", "0.1")
    assert tracking.workspace.get_run(run.id).get_metrics() == {"loss": 0.5}
    with pytest.raises(MlflowException) as refused:
        MlflowClient().log_metric(other.id, "loss", 1.0)
    assert refused.value.error_code == "PERMISSION_DENIED"


def test_a_launched_runs_end_belongs_to_its_supervisor(tracking: Tracking, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script on one of our compute targets ends its mlflow run before its supervisor has
    collected outputs/: the run token's end_run() leaves the run Running; anyone else's ends it."""
    from airflow_aml.service.tokens import mint_run_token

    record = tracking.workspace.store.create_run(
        workspace=WS, experiment="launched", submitted_by="alice", status=RunStatus.RUNNING, compute_target="local")
    token, _ = mint_run_token(tracking.served.tokens, principal="alice", workspace=WS, run_id=record.run_id,
                              secrets_allowed=[])
    owner_token = os.environ["MLFLOW_TRACKING_TOKEN"]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_RUN_ID", record.run_id)
    with mlflow.start_run():
        mlflow.log_metric("loss", 0.5)
    assert tracking.workspace.get_run(record.run_id).status is RunStatus.RUNNING
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner_token)
    MlflowClient().set_terminated(record.run_id, "KILLED")
    assert tracking.workspace.get_run(record.run_id).status is RunStatus.CANCELED


def test_delete_tag_removes_it_from_our_run(tracking: Tracking) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("tags")).info.run_id
    client.set_tag(run_id, "keep", "1")
    client.set_tag(run_id, "drop", "2")
    client.delete_tag(run_id, "drop")
    tags = tracking.workspace.get_run(run_id).record.tags
    assert tags["keep"] == "1" and "drop" not in tags
    assert "drop" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException) as missing:
        client.delete_tag(run_id, "drop")  # MLflow's server refuses a tag the run does not have
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
