"""``mlflow.search_runs`` with MLflow's filter and order syntax, against our runs."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airflow_aml.service.mlflow.search import Clause, OrderKey, parse_filter, parse_order_by
from tests.unit.service.mlflow.conftest import Tracking


def _log(name: str, acc: float | None, lr: str, team: str) -> str:
    with mlflow.start_run(run_name=name) as run:
        if acc is not None:
            mlflow.log_metric("acc", acc)
        mlflow.log_param("lr", lr)
        mlflow.set_tag("team", team)
        return run.info.run_id


def test_search_runs_returns_the_dataframe(tracking: Tracking) -> None:
    mlflow.set_experiment("sweep")
    ids = {name: _log(name, acc, lr, team) for name, acc, lr, team in (
        ("a", 0.9, "0.1", "ml"), ("b", 0.6, "0.1", "ops"), ("c", 0.4, "0.1", "ml"),
        ("d", 0.95, "0.01", "ml"), ("e", None, "0.1", "ml"),
    )}
    frame = mlflow.search_runs(filter_string="metrics.acc > 0.5 and params.lr = '0.1'",
                               order_by=["metrics.acc DESC"])
    assert list(frame["run_id"]) == [ids["a"], ids["b"]]
    assert list(frame["metrics.acc"]) == [0.9, 0.6]
    assert list(frame["params.lr"]) == ["0.1", "0.1"]
    assert list(frame["tags.mlflow.runName"]) == ["a", "b"]
    assert set(frame["status"]) == {"FINISHED"} and set(frame["experiment_id"]) == {"sweep"}

    ascending = mlflow.search_runs(order_by=["metrics.acc ASC"])
    assert list(ascending["tags.mlflow.runName"]) == ["c", "b", "a", "d", "e"]  # no acc: last
    tagged = mlflow.search_runs(filter_string="tags.team != 'ops' and attributes.run_name LIKE '%'",
                                order_by=["params.lr", "attributes.run_name DESC"])
    assert list(tagged["tags.mlflow.runName"]) == ["d", "e", "c", "a"]
    named = mlflow.search_runs(filter_string="tags.`mlflow.runName` IN ('a', 'e') and attributes.status = 'FINISHED'")
    assert sorted(named["tags.mlflow.runName"]) == ["a", "e"]
    # Newest first by default, and pages follow one another.
    client = MlflowClient()
    first = client.search_runs(["sweep"], max_results=2)
    second = client.search_runs(["sweep"], max_results=2, page_token=first.token)
    assert [run.info.run_name for run in first + second] == ["e", "d", "c", "b"]
    assert mlflow.search_runs(experiment_names=["sweep"], filter_string="metrics.acc >= 0.95")["run_id"].tolist() == [
        ids["d"]]


def test_a_bad_filter_is_an_invalid_parameter(tracking: Tracking) -> None:
    mlflow.set_experiment("sweep")
    with pytest.raises(MlflowException) as bad:
        mlflow.search_runs(filter_string="metrics.acc > 'high'")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_parse_filter_and_order_by() -> None:
    assert parse_filter("metrics.`val loss` <= -1e-3 AND params.lr != \"it's\" and run.status NOT IN ('FAILED')") == [
        Clause("metric", "val loss", "<=", -0.001), Clause("param", "lr", "!=", "it's"),
        Clause("attribute", "status", "NOT IN", ("FAILED",)),
    ]
    assert parse_order_by(["metrics.acc DESC", "start_time"]) == [
        OrderKey("metric", "acc", False), OrderKey("attribute", "start_time", True)]
    for bad in ("metrics.acc >", "metrics.acc > 1 or params.a = 'b'", "params.lr > '1'", "nope.x = 'y'",
                "attributes.color = 'red'", "params.a IN ('b'"):
        with pytest.raises(Exception, match="Invalid"):
            parse_filter(bad)
