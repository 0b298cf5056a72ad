"""How a waiter watches a deployment: is its supervisor alive, and what to record when it is not.

A deployment's changes are carried out by its supervisor (``supervisor/``), a long-lived process
that may run under another ``$AML_HOME`` than the waiter (a triggerer, a sensor): the waiter judges
it by the supervisor the deployment's record names (pid and host, published when it starts).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from airflow_aml.activities import ActivityKind, WorkerCheck
from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.supervision import SupervisorHandle
from airflow_aml.entities import ActivityRecord, ActivityStatus, DeploymentRecord, DeploymentState
from airflow_aml.exceptions import ConflictError, DeploymentNotFoundError, NotFoundError

# Seconds a deployment's activity may go without a live supervisor (and without any update) before
# a waiter fails it: a supervisor takes a few seconds to start and publish itself.
ABANDONED_AFTER = 15.0


class Watched(Protocol):
    """What is watched of a ``Deployment``."""

    workspace: WorkspaceContext
    supervision: SupervisorHandle

    @property
    def name(self) -> str: ...

    @property
    def serving_image_id(self) -> str | None: ...


def supervisor_check(deployment: Watched) -> WorkerCheck:
    """Alive when this handle's own start still runs, when the pid file here names a live
    supervisor, or when the supervisor the record names is alive; dead only when the record names
    this machine and a dead process. Another host, or nothing recorded yet, cannot be told from
    here. Dead for ``ABANDONED_AFTER`` seconds counts: a supervisor that is starting has not
    published itself yet, and one that lost the deployment's lock to another exits at once."""
    ctx, handle = deployment.workspace, deployment.supervision

    def alive() -> bool | None:
        if handle.alive():
            return True
        try:
            record = ctx.store.get_deployment(ctx.name, deployment.name)
        except DeploymentNotFoundError:
            return None  # deleted: nothing left to watch
        recorded = handle.recorded_alive(record.runtime)
        if recorded is not None:
            return recorded
        return False if handle.started_here else None

    def abandon(activity: ActivityRecord, reason: str) -> None:
        error = (f"The supervisor of deployment '{deployment.name}' is not running; its log ends with:\n"
                 f"{handle.supervisor_log_tail()}")
        with contextlib.suppress(ConflictError, NotFoundError):
            ctx.store.update_activity(activity.activity_id, status=ActivityStatus.FAILED, error=error,
                                      message="The supervisor is not running")
        with contextlib.suppress(NotFoundError, ConflictError):
            state = DeploymentState.FAILED if deployment.serving_image_id is None else DeploymentState.UNHEALTHY
            if activity.kind == ActivityKind.DEPLOYMENT_DELETE:
                state = DeploymentState.DELETING
            ctx.store.update_deployment(ctx.name, deployment.name, state=state, error=error)

    return WorkerCheck(alive=alive, abandon=abandon, grace=ABANDONED_AFTER,
                       where=f"The supervisor of deployment '{deployment.name}'")


def failed_for_good(record: DeploymentRecord) -> bool:
    """A create that never served and whose supervisor said so itself: it recorded Failed and
    stopped (publishing ``running: False``). A supervisor killed mid-create (SIGKILL, a reboot)
    says nothing; the Failed a waiter then records is a loss, not a verdict, and restore brings the
    deployment back."""
    supervisor = record.runtime.get("supervisor") or {}
    return (record.state is DeploymentState.FAILED and not record.serving_image_id
            and supervisor.get("running") is False)
