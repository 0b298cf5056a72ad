"""What an update says it changes (pure: no deployment)."""

from __future__ import annotations

from airflow_aml.deployments.changes import changes_message, config_changes, describe_changes
from airflow_aml.deployments.config import DeploymentConfig


def test_each_changed_setting_old_to_new_in_field_order() -> None:
    current = DeploymentConfig(replicas=2, sample_rate=0.1)
    new = DeploymentConfig(replicas=1, request_timeout_seconds=10)
    assert config_changes(current, new) == [
        "replicas 2 -> 1", "sample_rate 0.1 -> 0.0", "request_timeout_seconds 30.0 -> 10.0",
    ]
    assert config_changes(new, new) == []


def test_nested_and_unset_values_and_the_image() -> None:
    scaled = DeploymentConfig(autoscale={"min_replicas": 1, "max_replicas": 3})
    wider = DeploymentConfig(autoscale={"min_replicas": 1, "max_replicas": 5})
    assert config_changes(scaled, wider) == ["autoscale.max_replicas 3 -> 5"]
    assert config_changes(DeploymentConfig(), scaled)[0].startswith("autoscale unset -> {min_replicas: 1")
    assert describe_changes("echo:1", "echo:2", scaled, scaled) == ["image echo:1 -> echo:2"]
    assert changes_message("svc", ["replicas 2 -> 1"]) == (
        "Deployment 'svc': replicas 2 -> 1 (the update's configuration replaces the current one)")
