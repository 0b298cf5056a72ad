"""A deployment on a remote target: what ``Deployment`` does instead of starting a supervisor.

The cluster (or ACI) is the supervisor. ``create``/``update`` apply the objects and leave the
deployment Transitioning with its activity Running; every look by a waiter (``remote_check``:
``wait_for_deployment``, a sensor, a trigger) reads the target's status (``sync``) and moves the
record and the activity on: Healthy/Succeeded, or Failed with the target's reason. A caller that
crashes mid-wait loses nothing: the next look, by anyone who may write, completes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from airflow_aml.activities import ActivityKind, WorkerCheck
from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.keys import forget_keys, new_keys, store_keys
from airflow_aml.deployments.remote.base import RemoteSpec, RemoteStatus, RemoteTarget
from airflow_aml.deployments.target_settings import kubernetes_settings
from airflow_aml.entities import ActivityStatus, DeploymentRecord, DeploymentState, ImageRecord
from airflow_aml.exceptions import (
    ConflictError,
    DeploymentError,
    DeploymentNotFoundError,
    NotFoundError,
    ValidationError,
)
from airflow_aml.roles import Action
from airflow_aml.runtime.scoring.auth import hash_key

# ``Deployment`` (deployment.py imports this module, so it is not imported back).
Deployment = Any

log = logging.getLogger(__name__)

ACI = "aci"
LOCAL_TARGETS = ("local", "docker")


# ---------------------------------------------------------------------------- which target
def resolve(ws: WorkspaceContext, target: str, settings: DeploymentConfig) -> RemoteTarget | None:
    """The remote target ``target`` names (``"aci"``, or a registered ``kubernetes`` compute
    target), checked; None for the local ones. ValidationError for settings that do not fit."""
    remote: RemoteTarget | None = None
    if target == ACI:
        if settings.aci is None:
            raise ValidationError("The aci target needs config={'aci': {resource_group, location, registry_prefix}}")
        from airflow_aml.deployments.remote.aci import AciTarget

        remote = AciTarget(settings.aci, ws.name)
    elif target not in LOCAL_TARGETS:
        try:
            compute = ws.store.get_compute_target(ws.name, target)
        except NotFoundError:
            return None  # not a compute target: the replica drivers name the unknown target
        if compute.kind != "kubernetes":
            raise ValidationError(
                f"Compute target {target!r} is of kind {compute.kind!r}; deployments go to a 'kubernetes' compute "
                "target, 'aci', 'local' or 'docker'")
        from airflow_aml.deployments.remote.kubernetes import KubernetesTarget

        remote = KubernetesTarget(kubernetes_settings(target, compute.config), ws.name)
    if remote is None:
        if settings.aci is not None:
            raise ValidationError(f"config 'aci' is for target='aci', not {target!r}")
        return None
    if settings.port is not None:
        raise ValidationError(f"config 'port' is the local front's; the {remote.kind} target serves on its own")
    return remote


def of_record(ws: WorkspaceContext, record: DeploymentRecord) -> RemoteTarget | None:
    if not record.runtime.get("remote"):
        return None
    return resolve(ws, record.target, DeploymentConfig.model_validate(record.config))


def spec_for(remote: RemoteTarget, record: DeploymentRecord, image: ImageRecord | dict[str, str],
             settings: DeploymentConfig) -> RemoteSpec:
    """The spec of ``image`` (an ImageRecord, or the ``serving`` image recorded earlier)."""
    if isinstance(image, ImageRecord):
        if image.builder != "docker" or not image.location:
            raise ValidationError(
                f"Image '{image.id}' was built by the {image.builder!r} builder; the {remote.kind} target serves "
                "images of the 'docker' builder, pushed under the target's registry_prefix")
        image = {"id": image.id, "reference": remote.image_reference(image.location)}
    return RemoteSpec(
        workspace=record.workspace, name=record.name, image_id=image["id"], image=image["reference"],
        config=settings, scoring=settings.scoring_config(record.primary_key_hash, record.secondary_key_hash),
        generation=record.generation,
    )


# ---------------------------------------------------------------------------- lifecycle
def create(cls: type[Deployment], ws: WorkspaceContext, name: str, target: str, remote: RemoteTarget,
           image: ImageRecord, settings: DeploymentConfig, *, tags: Mapping[str, str] | None, description: str,
           wait: bool, timeout: float | None, idempotency_key: str | None) -> Deployment:
    keys = new_keys()
    store = ws.store
    record = store.create_deployment(
        ws.name, name, target=target, image_id=image.id, created_by=ws.principal,
        config=settings.model_dump(mode="json"), scoring_uri=None,
        primary_key_hash=hash_key(keys["primary"]), secondary_key_hash=hash_key(keys["secondary"]),
        description=description, tags=dict(tags or {}), runtime={"remote": remote.kind},
        idempotency_key=idempotency_key,
    )
    deployment = cls(ws, record)
    try:
        spec = spec_for(remote, record, image, settings)
        remote.validate(spec)
        store_keys(ws, name, keys)
        activity = store.create_activity(ws.name, kind=ActivityKind.DEPLOYMENT_CREATE, target_id=name,
                                         message="Queued")
        deployment.record = store.update_deployment(ws.name, name, activity_id=activity.activity_id)
        _apply(deployment, remote, spec, activity.activity_id)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            store.update_deployment(ws.name, name, state=DeploymentState.FAILED, error=f"Could not deploy: {exc}")
        raise
    deployment.keys = (keys["primary"], keys["secondary"])
    return deployment.wait_for_deployment(timeout=timeout) if wait else deployment


def update(deployment: Deployment, remote: RemoteTarget, image: ImageRecord, settings: DeploymentConfig,
           activity_id: str | None, tags: Mapping[str, str] | None, wait: bool,
           timeout: float | None) -> Deployment:
    """Re-apply the objects with the new image and settings. The cluster rolls out (never below the
    ready count); no change on a Healthy deployment is a no-op activity, as on the local targets."""
    ws, store = deployment.workspace, deployment.workspace.store
    kind = ActivityKind.DEPLOYMENT_UPDATE
    unchanged = image.id == deployment.image_id == deployment.serving_image_id and settings == deployment.config
    if unchanged and deployment.state is DeploymentState.HEALTHY:
        activity = store.create_activity(ws.name, kind=kind, target_id=deployment.name, message="No change",
                                         activity_id=activity_id)
        store.update_activity(activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                              message=f"Deployment '{deployment.name}' already serves {image.id}; no change")
        deployment.record = store.update_deployment(ws.name, deployment.name, activity_id=activity.activity_id,
                                                    tags=tags)
        return deployment
    remote.validate(spec_for(remote, deployment.record, image, settings))  # before anything changes
    activity = store.create_activity(ws.name, kind=kind, target_id=deployment.name, message="Queued",
                                     activity_id=activity_id)
    deployment.record = store.update_deployment(
        ws.name, deployment.name, image_id=image.id, config=settings.model_dump(mode="json"),
        state=DeploymentState.TRANSITIONING, activity_id=activity.activity_id, tags=tags, error="",
        next_generation=True)
    _apply(deployment, remote, spec_for(remote, deployment.record, image, settings), activity.activity_id)
    return deployment.wait_for_deployment(timeout=timeout) if wait else deployment


def update_keys(deployment: Deployment, remote: RemoteTarget) -> None:
    record = deployment.record
    image = record.runtime.get("applied") or {"id": record.image_id, "reference": ""}
    remote.update_keys(spec_for(remote, record, image, deployment.config))


def delete(deployment: Deployment, remote: RemoteTarget, *, wait: bool, timeout: float | None) -> None:
    ws, store = deployment.workspace, deployment.workspace.store
    forget_keys(ws, deployment.name)  # refused from now on, whatever happens next
    activity = store.create_activity(ws.name, kind=ActivityKind.DEPLOYMENT_DELETE, target_id=deployment.name,
                                     message="Queued")
    deployment.record = store.update_deployment(ws.name, deployment.name, state=DeploymentState.DELETING,
                                                activity_id=activity.activity_id, next_generation=True)
    remote.delete(deployment.name)
    store.update_activity(activity.activity_id, status=ActivityStatus.RUNNING, progress=0.5,
                          message=f"Deletion of the {remote.kind} objects requested")
    if wait:
        with contextlib.suppress(DeploymentNotFoundError):
            deployment.wait_for_deployment(timeout=timeout)


def _apply(deployment: Deployment, remote: RemoteTarget, spec: RemoteSpec, activity_id: str) -> None:
    ws, store = deployment.workspace, deployment.workspace.store
    try:
        objects = remote.apply(spec)
    except Exception as exc:
        error = f"The {remote.kind} target refused deployment '{deployment.name}': {exc}"
        store.update_activity(activity_id, status=ActivityStatus.FAILED, error=error, message="Refused")
        state = DeploymentState.HEALTHY if deployment.serving_image_id else DeploymentState.FAILED
        deployment.record = store.update_deployment(ws.name, deployment.name, state=state, error=error)
        raise DeploymentError(error, deployment=deployment.name, error=error) from exc
    runtime = {**deployment.record.runtime, "objects": objects,
               "applied": {"id": spec.image_id, "reference": spec.image}}
    deployment.record = store.update_deployment(ws.name, deployment.name, runtime=runtime)
    store.update_activity(activity_id, status=ActivityStatus.RUNNING, progress=0.3,
                          message=f"Applied generation {spec.generation} to the {remote.kind} target; rolling out")


# ---------------------------------------------------------------------------- following it
def remote_check(deployment: Deployment, remote: RemoteTarget) -> WorkerCheck:
    """The waiter's view: the target is always there (it supervises); each look syncs."""
    return WorkerCheck(alive=lambda: True, ended=lambda: sync(deployment, remote),
                       where=f"The {remote.kind} target of deployment '{deployment.name}'")


def sync(deployment: Deployment, remote: RemoteTarget) -> ActivityStatus | None:
    """Read the target's status and move the record and its activity on; the activity's end, or
    None while the rollout goes on (or the target cannot be read now: the next look retries)."""
    ws = deployment.workspace
    try:
        record = deployment.refresh().record
    except DeploymentNotFoundError:
        return ActivityStatus.SUCCEEDED
    if record.activity_id is None:
        return None
    activity = ws.store.get_activity(record.activity_id)
    if activity.status.is_terminal:
        return activity.status
    if not ws.allows(Action.WRITE):
        return None  # a Reader waits for a writer's look
    try:
        status = remote.status(deployment.name)
    except Exception as exc:  # an API that does not answer now: not a verdict
        log.warning("Deployment %r: cannot read the %s target's status: %s", deployment.name, remote.kind, exc)
        return None
    try:
        return _record(deployment, remote, record, activity.activity_id, status)
    except ConflictError:  # a concurrent look ended it first
        return ws.store.get_activity(record.activity_id).status


def _record(deployment: Deployment, remote: RemoteTarget, record: DeploymentRecord, activity_id: str,
            status: RemoteStatus) -> ActivityStatus | None:
    ws, store, name = deployment.workspace, deployment.workspace.store, deployment.name
    if record.state is DeploymentState.DELETING:
        if status.phase != "gone":
            return None
        with contextlib.suppress(DeploymentNotFoundError):
            store.delete_deployment(ws.name, name)
        store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                              message=f"Deployment '{name}' deleted from the {remote.kind} target")
        return ActivityStatus.SUCCEEDED
    if status.phase == "progressing":
        store.update_activity(activity_id, message=status.reason)
        return None
    if status.phase == "healthy":
        applied = record.runtime.get("applied") or {}
        runtime = {**record.runtime, "serving": {**applied, "config": record.config}, "ready": status.ready}
        store.update_deployment(ws.name, name, state=DeploymentState.HEALTHY, serving_image_id=record.image_id,
                                scoring_uri=status.scoring_uri, error="", runtime=runtime)
        store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                              message=f"Deployment '{name}' serves image {record.image_id} at {status.scoring_uri}")
        return ActivityStatus.SUCCEEDED
    error = f"Deployment '{name}' failed on the {remote.kind} target: {status.reason}"
    served = record.runtime.get("serving")
    if served and record.serving_image_id and status.phase == "failed":
        # An update that cannot roll out: go back to what served (the old pods never left).
        try:
            remote.apply(spec_for(remote, record, served, DeploymentConfig.model_validate(served["config"])))
        except Exception as exc:  # the failed update's verdict stands; the rollback's failure is logged
            log.warning("Deployment %r: cannot roll back to %s: %s", name, record.serving_image_id, exc)
        error = f"Update to image {record.image_id} failed; still serving {record.serving_image_id}: {status.reason}"
        store.update_deployment(ws.name, name, state=DeploymentState.HEALTHY, image_id=record.serving_image_id,
                                config=served["config"], error=error)
    else:
        store.update_deployment(ws.name, name, state=DeploymentState.FAILED, error=error)
    store.update_activity(activity_id, status=ActivityStatus.FAILED, error=error, message="Failed")
    return ActivityStatus.FAILED


def telemetry(remote: RemoteTarget) -> dict[str, Any]:
    return {"available": False,
            "reason": f"request telemetry is recorded by the local front; the {remote.kind} target has none here"}
