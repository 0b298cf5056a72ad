"""Compute targets, chosen by the ``kind`` of their record.

``build_compute_target(workspace, "gpu-box")`` looks the name up in the workspace's store and
builds the class registered for its kind. The name ``local`` always works, registered or not: it
is the target every workspace has. A new kind is one class registered with
``register_compute_kind``. Built-in kinds beyond ``local`` (``docker``, in
``airflow_aml.images.docker.runs`` beside the image builder it reuses; ``spark``, in
``airflow_aml.compute.spark``) are imported by name on first use, so that importing
``airflow_aml.compute`` stays light and free of import cycles.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from airflow_aml.compute.base import AbstractComputeTarget, RunLaunch
from airflow_aml.compute.local import LocalComputeTarget
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ComputeTargetRecord, RunRecord
from airflow_aml.exceptions import ComputeTargetNotFoundError, ValidationError

__all__ = [
    "DEFAULT_COMPUTE_TARGET",
    "AbstractComputeTarget",
    "LocalComputeTarget",
    "RunLaunch",
    "build_compute_target",
    "check_compute_config",
    "compute_kinds",
    "known_compute_kinds",
    "register_compute_kind",
]

DEFAULT_COMPUTE_TARGET = "local"

_KINDS: dict[str, type[AbstractComputeTarget]] = {"local": LocalComputeTarget}
# Built-in kinds registered by importing their module (which calls register_compute_kind).
_BUILTIN_MODULES = {
    "docker": "airflow_aml.images.docker.runs",
    "spark": "airflow_aml.compute.spark",
    "kubernetes": "airflow_aml.compute.kubernetes",
}


def register_compute_kind(kind: str, cls: type[AbstractComputeTarget]) -> None:
    """Make records of ``kind`` build ``cls`` (replacing an earlier registration of the kind)."""
    if not isinstance(cls, type) or not issubclass(cls, AbstractComputeTarget):
        raise ValidationError(f"Compute kind {kind!r} must be an AbstractComputeTarget subclass, not {cls!r}")
    _KINDS[kind] = cls


def compute_kinds() -> list[str]:
    return sorted({*_KINDS, *_BUILTIN_MODULES})


def compute_kind(kind: str) -> type[AbstractComputeTarget] | None:
    """The class of ``kind`` (importing a built-in kind's module the first time); None if unknown."""
    if kind not in _KINDS and kind in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[kind])  # registers the kind
    return _KINDS.get(kind)


def check_compute_config(kind: str, config: Mapping[str, Any]) -> None:
    """Refuse a bad configuration of a ``kind`` target when it is registered (ValidationError)."""
    cls = compute_kind(kind)
    if cls is None:
        raise ValidationError(f"Unknown compute kind {kind!r}; valid: {', '.join(compute_kinds())}")
    cls.check_config(config)


known_compute_kinds = compute_kinds  # the name ``Workspace.register_compute_target`` uses


def build_compute_target(
    workspace: WorkspaceContext, name_or_record: str | ComputeTargetRecord | RunRecord | None
) -> AbstractComputeTarget:
    """The compute target for a name, a target record, or a run record (its ``compute_target``).

    ``None`` (and a run without a target) means ``local``.
    """
    if isinstance(name_or_record, RunRecord):
        name_or_record = name_or_record.compute_target
    if name_or_record is None:
        name_or_record = DEFAULT_COMPUTE_TARGET
    if isinstance(name_or_record, ComputeTargetRecord):
        record: ComputeTargetRecord | None = name_or_record
    else:
        record = _lookup(workspace, name_or_record)
        if record is None:  # the implicit local target
            return LocalComputeTarget(workspace, None)
    cls = compute_kind(record.kind)
    if cls is None:
        raise ValidationError(
            f"Compute target {record.name!r} in workspace {record.workspace!r} has unknown kind "
            f"{record.kind!r}; known kinds: {', '.join(compute_kinds())}"
        )
    return cls(workspace, record)


def _lookup(workspace: WorkspaceContext, name: str) -> ComputeTargetRecord | None:
    try:
        return workspace.store.get_compute_target(workspace.name, name)
    except ComputeTargetNotFoundError:
        if name == DEFAULT_COMPUTE_TARGET:
            return None
        registered = sorted(r.name for r in workspace.store.list_compute_targets(workspace.name))
        listing = ", ".join([DEFAULT_COMPUTE_TARGET, *(r for r in registered if r != DEFAULT_COMPUTE_TARGET)])
        raise ComputeTargetNotFoundError(
            f"Compute target {name!r} not found in workspace {workspace.name!r}; available: {listing}"
        ) from None
