"""A ``spark_conn_id`` target's options, built by the real apache-spark provider's ``SparkSubmitHook``
from a real Airflow connection (``AIRFLOW_CONN_<ID>``, as a worker or a secrets backend gives it).

No JVM here: the run on a standalone cluster through a connection is in test_spark_target.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_aml.compute import build_compute_target
from airflow_aml.compute.spark import SparkComputeConfig
from airflow_aml.compute.spark import connection as spark_connection
from airflow_aml.compute.spark.connection import connection_submit_options
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.workspace import Workspace


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "spark", **fields}))


def options_for(config: dict[str, object], target: str = "spark-prod") -> list[str]:
    return connection_submit_options(SparkComputeConfig.parse(config), target=target)


def test_the_connection_gives_the_master_queue_and_the_targets_own_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "spark_prod", host="spark://10.0.0.5", port=7077,
                   extra={"queue": "ml", "deploy-mode": "client"})
    options = options_for({"spark_conn_id": "spark_prod", "driver_memory": "512m", "executor_memory": "2g",
                           "conf": {"spark.executor.cores": "1"}})
    assert options[:2] == ["--master", "spark://10.0.0.5:7077"]
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs == {"--master": "spark://10.0.0.5:7077", "--conf": "spark.executor.cores=1",
                     "--executor-memory": "2g", "--driver-memory": "512m", "--name": "aml-spark-prod",
                     "--queue": "ml", "--deploy-mode": "client"}


def test_a_local_master_connection_without_a_deploy_mode_runs_in_client_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "spark_here", host="local[2]")
    options = options_for({"spark_conn_id": "spark_here"})
    assert options[:2] == ["--master", "local[2]"]
    assert options[-2:] == ["--deploy-mode", "client"]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"host": "spark://10.0.0.5", "port": 7077, "extra": {"deploy-mode": "cluster"}}, "only client mode works"),
    ({"host": "yarn"}, "must be local, local[N], local[*] or spark://host:port"),
    ({"host": "k8s://https://10.0.0.1", "port": 443}, "must be local"),
])
def test_what_this_target_cannot_run_is_refused(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, object], reason: str
) -> None:
    set_connection(monkeypatch, "spark_bad", **fields)
    with pytest.raises(RunConfigurationError, match="connection 'spark_bad'") as caught:
        options_for({"spark_conn_id": "spark_bad"})
    assert reason in str(caught.value)


def test_an_unknown_connection_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SPARK_NOWHERE", raising=False)
    with pytest.raises(RunConfigurationError, match="cannot read Airflow connection 'spark_nowhere'"):
        options_for({"spark_conn_id": "spark_nowhere"})


def test_without_the_provider_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_connection, "HOOK_MODULE", "airflow.providers.apache.spark.hooks.not_there")
    with pytest.raises(RunConfigurationError, match=r"needs apache-airflow-providers-apache-spark"):
        options_for({"spark_conn_id": "spark_prod"})


def test_submitting_to_a_target_with_a_bad_connection_creates_no_run(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "spark_cluster_mode", host="spark://10.0.0.5", port=7077,
                   extra={"deploy-mode": "cluster"})
    workspace.register_compute_target("spark-prod", kind="spark", config={"spark_conn_id": "spark_cluster_mode"})
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    with pytest.raises(RunConfigurationError, match="only client mode works"):
        workspace.experiment("spark").submit(src, RunConfiguration(script="train.py", target="spark-prod"))
    assert workspace.experiment("spark").get_runs() == []


def test_the_resolved_options_are_what_the_supervisor_gets(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "spark_prod", host="spark://10.0.0.5", port=7077)
    workspace.register_compute_target("spark-prod", kind="spark", config={"spark_conn_id": "spark_prod"})
    target = build_compute_target(workspace, "spark-prod")
    settings = target.target_settings()
    assert settings["config"]["spark_conn_id"] == "spark_prod"
    assert settings["submit_options"][:2] == ["--master", "spark://10.0.0.5:7077"]
