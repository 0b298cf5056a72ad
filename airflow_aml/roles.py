"""What each workspace role may do (Owner / Contributor / Reader, as in Azure ML), and which action
each metadata-store call needs.

The SDK never reaches the store but through a workspace context (``airflow_aml.context``), which
checks every store call against ``STORE_ACTIONS`` for the acting principal: a feature method that
forgot its own check still cannot write for a Reader. The workspace service will enforce the same
table per request.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from airflow_aml.entities import Role
from airflow_aml.names import is_deployment_key_secret_name


class Action(enum.StrEnum):
    READ = "read"  # list and show anything but secret values
    WRITE = "write"  # runs, metrics, outputs, models, images, deployments, uploads
    READ_SECRETS = "read_secrets"
    MANAGE = "manage"  # datastores, compute targets, secrets, role assignments


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.READER: frozenset({Action.READ}),
    Role.CONTRIBUTOR: frozenset({Action.READ, Action.WRITE, Action.READ_SECRETS}),
    Role.OWNER: frozenset(Action),
}


def allows(role: Role | None, action: Action) -> bool:
    return role is not None and action in PERMISSIONS[role]


class Unavailable(enum.Enum):
    """A store call that no workspace handle makes (creating workspaces, closing the store)."""

    SYSTEM = "system"


def _secret_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return str(kwargs["name"] if "name" in kwargs else args[1])


def _secret_change(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Action:
    # A web service's keys are written by whoever deploys it; every other secret by an Owner.
    return Action.WRITE if is_deployment_key_secret_name(_secret_name(args, kwargs)) else Action.MANAGE


StoreAccess = Action | Unavailable | Callable[[tuple[Any, ...], dict[str, Any]], Action]

# Every method of ``AbstractStore`` (a test fails on one missing here).
STORE_ACTIONS: dict[str, StoreAccess] = {
    # workspaces
    "create_workspace": Unavailable.SYSTEM,
    "get_workspace": Action.READ,
    "list_workspaces": Action.READ,
    "set_default_datastore": Action.MANAGE,
    # experiments and runs
    "get_or_create_experiment": Action.WRITE,
    "get_experiment": Action.READ,
    "list_experiments": Action.READ,
    "create_run": Action.WRITE,
    "get_run": Action.READ,
    "update_run_status": Action.WRITE,
    "finish_run": Action.WRITE,
    "request_cancel": Action.WRITE,
    "set_snapshot": Action.WRITE,
    "set_run_tags": Action.WRITE,
    "delete_run_tags": Action.WRITE,
    "add_run_properties": Action.WRITE,
    "log_params": Action.WRITE,
    "search_runs": Action.READ,
    "count_child_runs": Action.READ,
    "find_run_by_idempotency_key": Action.READ,
    "beat_run_heartbeat": Action.WRITE,
    "find_runs_without_heartbeat": Action.READ,
    "log_batch": Action.WRITE,
    "log_metric": Action.WRITE,
    "get_metrics": Action.READ,
    "get_latest_scalar_metrics": Action.READ,
    "get_latest_metrics": Action.READ,
    "append_log": Action.WRITE,
    "read_log": Action.READ,
    # datastores, compute targets, roles, secrets
    "register_datastore": Action.MANAGE,
    "get_datastore": Action.READ,
    "list_datastores": Action.READ,
    "delete_datastore": Action.MANAGE,
    "register_compute_target": Action.MANAGE,
    "get_compute_target": Action.READ,
    "list_compute_targets": Action.READ,
    "delete_compute_target": Action.MANAGE,
    "assign_role": Action.MANAGE,
    "remove_role": Action.MANAGE,
    "get_role": Action.READ,
    "list_role_assignments": Action.READ,
    "put_secret": _secret_change,
    "get_secret": Action.READ_SECRETS,
    "list_secret_names": Action.READ,
    "delete_secret": _secret_change,
    # activities
    "create_activity": Action.WRITE,
    "update_activity": Action.WRITE,
    "get_activity": Action.READ,
    "list_activities": Action.READ,
    # model registry
    "create_model_version": Action.WRITE,
    "get_model_version": Action.READ,
    "search_models": Action.READ,
    "set_model_tags": Action.WRITE,
    "delete_model_version": Action.WRITE,
    # image registry
    "create_image_version": Action.WRITE,
    "update_image": Action.WRITE,
    "get_image": Action.READ,
    "search_images": Action.READ,
    "set_image_tags": Action.WRITE,
    "delete_image_version": Action.WRITE,
    # deployments
    "create_deployment": Action.WRITE,
    "update_deployment": Action.WRITE,
    "get_deployment": Action.READ,
    "search_deployments": Action.READ,
    "delete_deployment": Action.WRITE,
    "close": Unavailable.SYSTEM,
}


def store_action(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Action | Unavailable:
    """The action the store call ``method(*args, **kwargs)`` needs (KeyError for an unknown method)."""
    access = STORE_ACTIONS[method]
    if isinstance(access, Action | Unavailable):
        return access
    return access(args, kwargs)
