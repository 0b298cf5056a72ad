"""A web service's two keys: random, kept encrypted in the workspace's secrets, hashes elsewhere.

The deployment record and the replicas' ``scoring.json`` hold only the keys' SHA-256 hashes; the
keys themselves are workspace secrets under reserved names (``deployment-<name>-primary-key``),
written by whoever may deploy and read only by a role that may read secrets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from airflow_aml.context import WorkspaceContext
from airflow_aml.exceptions import NotFoundError, SecretNotFoundError
from airflow_aml.names import deployment_key_secret_name
from airflow_aml.roles import Action
from airflow_aml.runtime.scoring.auth import generate_key

KEY_NAMES = ("primary", "secondary")


def new_keys() -> dict[str, str]:
    return {which: generate_key() for which in KEY_NAMES}


def store_keys(ctx: WorkspaceContext, deployment: str, keys: Mapping[str, str]) -> None:
    for which, key in keys.items():
        ctx.vault.set(deployment_key_secret_name(deployment, which), key)


def read_keys(ctx: WorkspaceContext, deployment: str) -> tuple[str, str]:
    """(primary, secondary); NotFoundError when they are gone (regenerate them)."""
    ctx.require(Action.READ_SECRETS)
    try:
        primary, secondary = (ctx.vault.get(deployment_key_secret_name(deployment, which)) for which in KEY_NAMES)
    except SecretNotFoundError as exc:
        raise NotFoundError(
            f"The keys of deployment '{deployment}' are not in the workspace's secrets; "
            "regenerate them with regenerate_key()"
        ) from exc
    return primary, secondary


def forget_keys(ctx: WorkspaceContext, deployment: str) -> None:
    for which in KEY_NAMES:
        with contextlib.suppress(SecretNotFoundError):
            ctx.vault.delete(deployment_key_secret_name(deployment, which))
