"""What an update changes of a deployment, said in one line per setting.

An update's configuration replaces the current one field by field (a mapping: the fields it
names; a ``DeploymentConfig`` or a YAML file: every field). A DAG that deploys with
``config={"replicas": 1}`` therefore undoes a hand-made ``deployments deploy --replicas 2`` on
every run; the update cannot tell who set the current value, so it says what it replaces,
``replicas 2 -> 1``, and the caller (the task log, the CLI) shows it.
"""

from __future__ import annotations

from typing import Any

from airflow_aml.deployments.config import DeploymentConfig

REPLACES = "the update's configuration replaces the current one"


def config_changes(current: DeploymentConfig, new: DeploymentConfig) -> list[str]:
    """``field old -> new`` for each setting that differs (nested ones as ``autoscale.max_replicas``)."""
    return _diff(current.model_dump(mode="json"), new.model_dump(mode="json"), "")


def describe_changes(current_image: str, new_image: str, current: DeploymentConfig, new: DeploymentConfig) -> list[str]:
    """The image and the settings an update changes, in the order a reader checks them."""
    changes = [f"image {current_image} -> {new_image}"] if current_image != new_image else []
    return changes + config_changes(current, new)


def changes_message(name: str, changes: list[str]) -> str:
    return f"Deployment '{name}': " + "; ".join(changes) + f" ({REPLACES})"


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str) -> list[str]:
    out: list[str] = []
    for key in new:  # the model's field order: stable, and the order README documents them in
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            out.extend(_diff(before, after, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key} {_show(before)} -> {_show(after)}")
    return out


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)
