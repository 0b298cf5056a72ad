"""``Deployment.restore``: after a reboot or killed supervisors, bring every deployment of this
machine back to its recorded state (a supervisor for each one that should run and has none).
Deployments on a remote target are skipped: the cluster (or ACI) supervises them."""

from __future__ import annotations

from typing import Any

from airflow_aml.activities import ActivityKind
from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.replicas import build_replica_driver
from airflow_aml.deployments.watch import failed_for_good
from airflow_aml.entities import DeploymentState
from airflow_aml.exceptions import AmlError, DeploymentError
from airflow_aml.references import Reference
from airflow_aml.roles import Action

# ``Deployment`` (deployment.py imports this module, so it is not imported back).
Deployment = Any


def restore_all(cls: type[Deployment], workspace: WorkspaceContext, *, wait: bool, timeout: float | None) -> list[str]:
    workspace.require(Action.WRITE)
    acted: list[str] = []
    failures: list[str] = []
    for record in workspace.store.search_deployments(workspace.name):
        deployment = cls(workspace, record)
        try:
            if record.runtime.get("remote"):
                continue  # the cluster (or ACI) supervises it; there is nothing to restart here
            if record.state is DeploymentState.DELETING:
                if not deployment.supervisor_alive():
                    acted.append(record.name)
                    deployment.delete(wait=wait, timeout=timeout)
                continue
            if failed_for_good(record) or deployment.supervisor_alive():
                continue
            acted.append(record.name)
            restart(deployment, timeout=timeout, wait=wait)
        except (AmlError, TimeoutError) as exc:  # one broken deployment must not keep the others down
            failures.append(f"{record.name}: {exc}")
    if failures:
        raise DeploymentError(
            f"Restored {len(acted) - len(failures)} of {len(acted)} deployment(s); failed: " + "; ".join(failures)
        )
    return acted


def restart(deployment: Deployment, *, wait: bool, timeout: float | None) -> None:
    ws, store = deployment.workspace, deployment.workspace.store
    image_id = deployment.serving_image_id or deployment.image_id
    image_record = store.get_image(ws.name, *Reference.parse_id(image_id, "image"))
    driver = build_replica_driver(deployment.target)
    driver.validate(image_record)
    activity = store.create_activity(ws.name, kind=ActivityKind.DEPLOYMENT_RESTORE, target_id=deployment.name,
                                     message="Queued")
    deployment.record = store.update_deployment(
        ws.name, deployment.name, image_id=image_id, state=DeploymentState.TRANSITIONING,
        activity_id=activity.activity_id, error="", next_generation=True,
    )
    deployment._write_scoring_config()
    deployment._write_desired("restore", driver.image_payload(image_record), deployment.config, activity.activity_id)
    deployment._start_supervisor()
    if wait:
        deployment.wait_for_deployment(timeout=timeout)
