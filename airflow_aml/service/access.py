"""Who may make which call through the service: the per-request half of authorization.

Every workspace-scoped call runs through the same ``GuardedStore`` the SDK uses
(``airflow_aml.context``), built for the caller's principal in the workspace the call acts on,
so the role table ``roles.STORE_ACTIONS`` is enforced once, in one place, for SDK and service.

What this module adds is what only a service has:

- finding that workspace for calls that name a run or an activity by id;
- the **run-token scope**: a run token acts for the run's submitter, but only on its own run and
  that run's descendants (status, metrics, logs, tags, child runs, their activities, files under
  ``runs/<id>/``), plus the few reads a script needs to open its workspace. Anything else is
  refused, whatever the submitter's role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_aml.context import WorkspaceContext, run_prefix
from airflow_aml.entities import RunQuery
from airflow_aml.exceptions import AuthorizationError, RunNotFoundError, ValidationError
from airflow_aml.service.identity import Identity
from airflow_aml.store.base import AbstractStore

# Reads a script needs to open its workspace and its run's datastore.
RUN_TOKEN_READS = frozenset({
    "list_workspaces", "get_workspace", "get_experiment", "get_datastore", "list_datastores",
    "get_compute_target", "get_role",
})
_MAX_DEPTH = 64  # sweeps nest two deep; a cycle cannot exist, but a bound costs nothing


class Access:
    """What one authenticated request may reach."""

    def __init__(self, store: AbstractStore, store_uri: str, identity: Identity) -> None:
        self.store = store
        self.store_uri = store_uri
        self.identity = identity
        self._contexts: dict[str, WorkspaceContext] = {}
        self._in_scope: dict[str, bool] = {}

    @property
    def principal(self) -> str:
        return self.identity.principal

    def context(self, workspace: str) -> WorkspaceContext:
        """The caller's handle on ``workspace`` (WorkspaceNotFoundError if it does not exist)."""
        if workspace not in self._contexts:
            if self.identity.is_run_token and workspace != self.identity.workspace:
                raise AuthorizationError(
                    f"A token of run {self.identity.run_id!r} may not act on workspace {workspace!r}"
                )
            record = self.store.get_workspace(workspace)
            self._contexts[workspace] = WorkspaceContext(record, self.store, self.store_uri, self.principal)
        return self._contexts[workspace]

    # ------------------------------------------------------------------ run tokens
    def check_store_call(self, method: str, arguments: Mapping[str, Any]) -> None:
        """AuthorizationError unless a run token may make this call (no-op for other callers)."""
        if not self.identity.is_run_token or method in RUN_TOKEN_READS:
            return
        if "run_id" in arguments and method != "create_run":
            self.require_run(str(arguments["run_id"]))
        elif method == "create_run":
            parent = arguments.get("parent_run_id")
            if not parent:
                raise self._refusal("create a top-level run")
            self.require_run(str(parent))
        elif method == "search_runs":
            query = arguments.get("query")
            parent = query.parent_run_id if isinstance(query, RunQuery) else None
            if not parent:
                raise self._refusal("search runs other than its own run's children")
            self.require_run(parent)
        elif method in ("get_latest_scalar_metrics", "get_latest_metrics"):
            for run_id in arguments.get("run_ids") or ():
                self.require_run(str(run_id))
        elif method in ("get_activity", "update_activity"):
            activity = self.store.get_activity(str(arguments["activity_id"]))
            self.require_run(activity.target_id, what=f"activity {activity.activity_id!r}")
        elif method == "get_or_create_experiment":
            run = self.store.get_run(str(self.identity.run_id))
            if arguments.get("name") != run.experiment:
                raise self._refusal(f"use experiment {arguments.get('name')!r}")
        else:
            raise self._refusal(method.replace("_", " "))

    def require_run(self, run_id: str, *, what: str | None = None) -> None:
        """For a run token: ``run_id`` must be its run or one of that run's descendants."""
        if not self.identity.is_run_token:
            return
        if not self._in_subtree(run_id):
            raise AuthorizationError(
                f"A token of run {self.identity.run_id!r} may not act on {what or f'run {run_id!r}'}"
            )

    def require_run_path(self, path: str) -> None:
        """For a run token: a datastore path must lie under ``runs/<id>/`` of a run in its scope."""
        if not self.identity.is_run_token:
            return
        parts = path.split("/")
        if len(parts) < 2 or parts[0] != run_prefix("").rstrip("/") or not parts[1]:
            raise AuthorizationError(
                f"A token of run {self.identity.run_id!r} may only reach files under runs/<run id>/, not {path!r}"
            )
        self.require_run(parts[1], what=f"the files of run {parts[1]!r}")

    def require_secret(self, name: str) -> None:
        if self.identity.is_run_token and name not in self.identity.secrets:
            raise AuthorizationError(
                f"A token of run {self.identity.run_id!r} may not read secret {name!r}: "
                "only the secrets named when the run was submitted"
            )

    def _in_subtree(self, run_id: str) -> bool:
        if run_id not in self._in_scope:
            self._in_scope[run_id] = self._walk_up(run_id)
        return self._in_scope[run_id]

    def _walk_up(self, run_id: str) -> bool:
        current: str | None = run_id
        for _ in range(_MAX_DEPTH):
            if current is None:
                return False
            if current == self.identity.run_id:
                return True
            try:
                current = self.store.get_run(current).parent_run_id
            except RunNotFoundError:
                return False
        return False

    def _refusal(self, what: str) -> AuthorizationError:
        return AuthorizationError(f"A token of run {self.identity.run_id!r} may not {what}")


def workspaces_visible(access: Access, names: Iterable[str]) -> list[str]:
    """The workspaces of ``names`` on which the caller holds a role (a run token: its own)."""
    if access.identity.is_run_token:
        return [name for name in names if name == access.identity.workspace]
    return [name for name in names if access.store.get_role(name, access.principal) is not None]


def refuse_run_token(access: Access, what: str) -> None:
    if access.identity.is_run_token:
        raise access._refusal(what)


def check_page_size(limit: int) -> None:
    if not 1 <= limit <= 1000:
        raise ValidationError(f"limit must be between 1 and 1000, not {limit}")
