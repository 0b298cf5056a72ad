"""Web-service deployments: an image served by supervised replicas behind a load-balancing front.

The names below are imported on first use (PEP 562): the deployment's supervisor process imports
``airflow_aml.deployments.supervisor`` through this package, and must not pay for the SDK's
``Deployment`` (workspace context, datastores, remote targets) before it can start the replica.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_aml.deployments.config import AutoscaleConfig, DeploymentConfig
    from airflow_aml.deployments.deployment import Deployment

_EXPORTS = {
    "AutoscaleConfig": "airflow_aml.deployments.config",
    "Deployment": "airflow_aml.deployments.deployment",
    "DeploymentConfig": "airflow_aml.deployments.config",
}

__all__ = ["AutoscaleConfig", "Deployment", "DeploymentConfig"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
