"""What each workspace role may do (Owner / Contributor / Reader, as in Azure ML).

The SDK checks the acting principal's role before every call that reads or changes a workspace;
the REST API will enforce the same table per request.
"""

from __future__ import annotations

import enum

from airflow_aml.entities import Role


class Action(enum.StrEnum):
    READ = "read"  # list and show anything but secret values
    WRITE = "write"  # runs, metrics, outputs, models, uploads
    READ_SECRETS = "read_secrets"
    MANAGE = "manage"  # datastores, compute targets, secrets, role assignments


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.READER: frozenset({Action.READ}),
    Role.CONTRIBUTOR: frozenset({Action.READ, Action.WRITE, Action.READ_SECRETS}),
    Role.OWNER: frozenset(Action),
}


def allows(role: Role | None, action: Action) -> bool:
    return role is not None and action in PERMISSIONS[role]
