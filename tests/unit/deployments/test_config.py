"""DeploymentConfig: checked as data, with messages that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.exceptions import ValidationError


def test_defaults_and_initial_replicas() -> None:
    config = DeploymentConfig.coerce(None)
    assert config.replicas == 1 and config.auth_enabled and config.telemetry and config.initial_replicas == 1
    assert DeploymentConfig.coerce({"autoscale": {"min_replicas": 2, "max_replicas": 3}}).initial_replicas == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"replicas": 0}, "replicas: Input should be greater than or equal to 1"),
        ({"replicas": 2, "autoscale": {}}, "give either replicas or autoscale"),
        ({"autoscale": {"min_replicas": 3, "max_replicas": 2}}, r"min_replicas \(3\) is above max_replicas \(2\)"),
        ({"autoscale": {"target_utilization": 1.5}}, "autoscale.target_utilization"),
        ({"sample_rate": 2}, "sample_rate"),
        ({"port": 80}, "port: Input should be greater than or equal to 1024"),
        ({"replica": 2}, "replica: Extra inputs are not permitted"),
        ("not a mapping", "Cannot read the deployment config"),
    ],
)
def test_bad_configs_are_refused(config: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeploymentConfig.coerce(config)  # type: ignore[arg-type]


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yml"
    path.write_text("autoscale:\n  min_replicas: 1\n  max_replicas: 3\nauth_enabled: false\nsample_rate: 0.1\n")
    config = DeploymentConfig.coerce(path)
    assert config.autoscale is not None and config.autoscale.max_replicas == 3 and not config.auth_enabled
    path.write_text("- a list\n")
    with pytest.raises(ValidationError, match="must be a mapping"):
        DeploymentConfig.coerce(path)


def test_scoring_config_carries_hashes_only_when_auth_is_on() -> None:
    on = DeploymentConfig(max_concurrent_requests=3).scoring_config("a" * 64, "b" * 64)
    assert on.auth_enabled and on.primary_key_hash == "a" * 64 and on.max_concurrent_requests == 3
    off = DeploymentConfig(auth_enabled=False).scoring_config("a" * 64, "b" * 64)
    assert not off.auth_enabled and off.primary_key_hash is None and off.secondary_key_hash is None


def test_replicas_do_not_inherit_private_variables() -> None:
    from airflow_aml.deployments.replicas import replica_environment

    env = replica_environment({
        "PATH": "/bin", "HOME": "/root", "AML_STORE_URI": "postgresql://u:pw@db/aml", "AML_SECRET_KEY": "k",
        "AML_PRINCIPAL": "owner", "AML_PROGRESS": "0", "AIRFLOW__CORE__FERNET_KEY": "f",
        "AIRFLOW_CONN_DB": "postgres://...", "AIRFLOW_VAR_TOKEN": "t", "OMP_NUM_THREADS": "2",
    })
    assert env == {"PATH": "/bin", "HOME": "/root", "AML_PROGRESS": "0", "OMP_NUM_THREADS": "2"}


def test_adaptive_batching_settings_reach_the_replicas_scoring_config() -> None:
    default = DeploymentConfig().scoring_config(None, None)
    assert (default.max_batch_size, default.max_latency_ms) == (32, 0.0)  # on, never waiting
    tuned = DeploymentConfig.coerce({"max_batch_size": 1, "max_latency_ms": 2.5}).scoring_config(None, None)
    assert (tuned.max_batch_size, tuned.max_latency_ms) == (1, 2.5)
    with pytest.raises(ValidationError, match="max_batch_size"):
        DeploymentConfig.coerce({"max_batch_size": 0})
