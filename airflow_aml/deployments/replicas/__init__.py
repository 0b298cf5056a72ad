"""Deployment targets: how a deployment's supervisor starts, checks and stops its replicas.

A deployment target kind is a ``ReplicaDriver``: ``local`` starts each replica as a process in the
image's environment (``processes.py``), ``docker`` as a container of the image (``containers.py``).
A new kind is a subclass registered with ``register_replica_driver``; kinds whose module is not
imported yet are imported on first use (``_BUILTIN_MODULES``: the docker one needs the docker SDK).
"""

from __future__ import annotations

import importlib

from airflow_aml.deployments.replicas.base import (
    SCORING_MODULE,
    Replica,
    ReplicaDriver,
    ReplicaSpec,
    free_port,
    replica_environment,
    wait_until,
)
from airflow_aml.deployments.replicas.processes import LocalProcessDriver, ProcessReplica
from airflow_aml.exceptions import ValidationError

DEFAULT_DEPLOYMENT_TARGET = "local"

_DRIVERS: dict[str, type[ReplicaDriver]] = {"local": LocalProcessDriver}
_BUILTIN_MODULES = {"docker": "airflow_aml.deployments.replicas.containers"}


def register_replica_driver(kind: str, cls: type[ReplicaDriver]) -> None:
    _DRIVERS[kind] = cls


def deployment_target_kinds() -> list[str]:
    return sorted(set(_DRIVERS) | set(_BUILTIN_MODULES))


def build_replica_driver(kind: str) -> ReplicaDriver:
    if kind not in _DRIVERS and kind in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[kind])
        except ImportError as exc:
            raise ValidationError(
                f"The {kind!r} deployment target needs an optional dependency: {exc} "
                f"(pip install 'airflow-aml[{kind}]')"
            ) from exc
    if kind not in _DRIVERS:
        raise ValidationError(f"Unknown deployment target {kind!r}; known: {', '.join(deployment_target_kinds())}")
    return _DRIVERS[kind]()


__all__ = [
    "DEFAULT_DEPLOYMENT_TARGET",
    "SCORING_MODULE",
    "LocalProcessDriver",
    "ProcessReplica",
    "Replica",
    "ReplicaDriver",
    "ReplicaSpec",
    "build_replica_driver",
    "deployment_target_kinds",
    "free_port",
    "register_replica_driver",
    "replica_environment",
    "wait_until",
]
