"""Deployments: an image served as a key-protected HTTP scoring web service.

    service = Deployment.create(ws, "iris-svc", "iris-scorer:2")                 # local processes
    service = Deployment.create(ws, "iris-svc", image, target="docker",
                                config={"autoscale": {"min_replicas": 1, "max_replicas": 3}})
    service.scoring_uri; primary, secondary = service.get_keys()
    service.run({"data": [[5.1, 3.5, 1.4, 0.2]]})
    service.update(image="iris-scorer:3")      # rolling: no request fails during the switch
    service.regenerate_key("primary")          # the old key is refused when this returns
    service.get_logs(); service.get_telemetry()
    service.delete()                           # idempotent
    Deployment.restore(ws)                     # after a reboot: supervisors back for every deployment

Each create/update/delete is an activity (``deployment_create`` / ``_update`` / ``_delete``,
target = the deployment name) that the deployment's supervisor (``supervisor/``) carries out;
``wait=False`` returns at once and ``wait_for_deployment`` (or an Airflow sensor) follows it.
This module is the lifecycle; the supervisor process and the local folder are behind
``supervision.SupervisorHandle``, the HTTP calls in ``scoring_client``.

Keys: two random keys per deployment. The deployment record and the replicas' config keep only
their SHA-256 hashes; the keys themselves are kept encrypted in the workspace's secrets
(``deployment-<name>-primary-key`` ...) so that ``get_keys`` (Owner/Contributor) can return them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_aml.activities import ActivityKind, ActivityWaiter, WorkerCheck, get_activity
from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.changes import changes_message, describe_changes
from airflow_aml.deployments.checks import keyed_activity, port_free, resolve_image
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.desired import DesiredState, Operation, read_desired, write_desired
from airflow_aml.deployments.keys import KEY_NAMES, forget_keys, new_keys, read_keys, store_keys
from airflow_aml.deployments.remote import lifecycle as remote_lifecycle
from airflow_aml.deployments.remote.base import RemoteTarget
from airflow_aml.deployments.replicas import DEFAULT_DEPLOYMENT_TARGET, ReplicaDriver, build_replica_driver, free_port
from airflow_aml.deployments.restoring import restore_all
from airflow_aml.deployments.scoring_client import confirm_key, score
from airflow_aml.deployments.supervision import SupervisorHandle
from airflow_aml.deployments.watch import supervisor_check
from airflow_aml.entities import (
    ActivityRecord,
    ActivityStatus,
    DeploymentRecord,
    DeploymentState,
    ImageRecord,
)
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    DeploymentError,
    DeploymentNotFoundError,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)
from airflow_aml.images.image import Image
from airflow_aml.names import validate_name
from airflow_aml.processes import this_host
from airflow_aml.roles import Action
from airflow_aml.runtime.scoring.auth import generate_key, hash_key

KIND_CREATE = ActivityKind.DEPLOYMENT_CREATE
KIND_UPDATE = ActivityKind.DEPLOYMENT_UPDATE
KIND_DELETE = ActivityKind.DEPLOYMENT_DELETE
KIND_RESTORE = ActivityKind.DEPLOYMENT_RESTORE
DEFAULT_TIMEOUT = 600.0

log = logging.getLogger(__name__)


class Deployment:
    def __init__(self, workspace: WorkspaceContext, record: DeploymentRecord) -> None:
        self.workspace = workspace
        self.record = record
        self.supervision = SupervisorHandle(workspace.name, record.name)
        self.changes: list[str] = []  # what the last update() changed: "replicas 2 -> 1", ...

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r}, image={self.image_id!r}, state={self.state.value!r})"

    # ------------------------------------------------------------------ fields
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> DeploymentState:
        return self.record.state

    @property
    def target(self) -> str:
        return self.record.target

    @property
    def image_id(self) -> str:
        return self.record.image_id

    @property
    def serving_image_id(self) -> str | None:
        return self.record.serving_image_id

    @property
    def scoring_uri(self) -> str | None:
        return self.record.scoring_uri

    @property
    def swagger_uri(self) -> str | None:
        return self.scoring_uri.rsplit("/", 1)[0] + "/swagger.json" if self.scoring_uri else None

    @property
    def config(self) -> DeploymentConfig:
        return DeploymentConfig.model_validate(self.record.config)

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.record.tags)

    @property
    def replicas(self) -> list[dict[str, Any]]:
        """The replicas as the supervisor last recorded them (port, ready, pid or container ...)."""
        return list(self.record.runtime.get("replicas") or [])

    @property
    def folder(self) -> Path:
        return self.supervision.folder

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        workspace: WorkspaceContext,
        name: str,
        image: Image | str,
        *,
        target: str = DEFAULT_DEPLOYMENT_TARGET,
        config: DeploymentConfig | Mapping[str, Any] | str | Path | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        wait: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """Deploy ``image`` (an Image, ``"name:version"`` or ``"name"`` = its latest version) as
        web service ``name``. Everything is checked before anything is created; AlreadyExistsError
        if the name is taken (``deploy`` creates or updates). With ``wait``, returns once the
        service is Healthy, or raises DeploymentError with the reason (the record stays, Failed).

        The new service's keys are on the returned object's ``keys`` (and ``get_keys()`` later).
        """
        workspace.require(Action.WRITE)
        validate_name("deployment", name)
        if idempotency_key:
            for record in workspace.store.search_deployments(workspace.name, idempotency_key=idempotency_key):
                existing = cls(workspace, record)
                if record.state is DeploymentState.FAILED and record.serving_image_id is None:
                    existing.delete(timeout=timeout)  # the earlier try never served: try again
                    break
                return existing.wait_for_deployment(timeout=timeout) if wait else existing
        image_record = resolve_image(workspace, image)
        settings = DeploymentConfig.coerce(config)
        if (remote := remote_lifecycle.resolve(workspace, target, settings)) is not None:  # the cluster supervises
            return remote_lifecycle.create(cls, workspace, name, target, remote, image_record, settings, tags=tags,
                                           description=description, wait=wait, timeout=timeout,
                                           idempotency_key=idempotency_key)
        driver = build_replica_driver(target)
        driver.validate(image_record)
        if SupervisorHandle(workspace.name, name).alive():
            raise ConflictError(
                f"The supervisor of an earlier deployment '{name}' is still shutting down; try again in a moment"
            )
        port = settings.port or free_port()
        if settings.port and not port_free(port):
            raise ValidationError(f"Port {port} of 127.0.0.1 is in use; choose another port or leave it unset")
        keys = new_keys()
        store = workspace.store
        try:
            record = store.create_deployment(
                workspace.name, name, target=target, image_id=image_record.id, created_by=workspace.principal,
                config=settings.model_dump(mode="json"), scoring_uri=f"http://127.0.0.1:{port}/score",
                primary_key_hash=hash_key(keys["primary"]), secondary_key_hash=hash_key(keys["secondary"]),
                description=description, tags=dict(tags or {}), runtime={"port": port},
                idempotency_key=idempotency_key,
            )
        except AlreadyExistsError:
            # A racing copy of this task created it a moment ago under the same key: follow it.
            racer = store.get_deployment(workspace.name, name)
            if not idempotency_key or racer.idempotency_key != idempotency_key:
                raise
            existing = cls(workspace, racer)
            return existing.wait_for_deployment(timeout=timeout) if wait else existing
        deployment = cls(workspace, record)
        try:
            store_keys(workspace, name, keys)
            activity = store.create_activity(workspace.name, kind=KIND_CREATE, target_id=name, message="Queued")
            deployment.record = store.update_deployment(workspace.name, name, activity_id=activity.activity_id)
            deployment._write_scoring_config()
            deployment._write_desired("create", driver.image_payload(image_record), settings, activity.activity_id)
            deployment._start_supervisor()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                store.update_deployment(workspace.name, name, state=DeploymentState.FAILED,
                                        error=f"Could not start the deployment: {exc}")
            raise
        deployment.keys = (keys["primary"], keys["secondary"])
        if wait:
            deployment.wait_for_deployment(timeout=timeout)
        return deployment

    @classmethod
    def deploy(
        cls,
        workspace: WorkspaceContext,
        name: str,
        image: Image | str,
        *,
        target: str = DEFAULT_DEPLOYMENT_TARGET,
        config: DeploymentConfig | Mapping[str, Any] | str | Path | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        wait: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """Create ``name``, or update it to ``image``/``config`` when it exists (same target)."""
        try:
            existing = cls.get(workspace, name)
        except DeploymentNotFoundError:
            try:
                return cls.create(workspace, name, image, target=target, config=config, tags=tags,
                                  description=description, wait=wait, timeout=timeout,
                                  idempotency_key=idempotency_key)
            except AlreadyExistsError:  # created concurrently: update it instead
                existing = cls.get(workspace, name)
        if existing.target != target:
            raise ConflictError(
                f"Deployment '{name}' runs on the {existing.target!r} target, not {target!r}; delete it first "
                "to move it"
            )
        if existing.state is DeploymentState.FAILED and existing.serving_image_id is None:
            # A create that never served: start over rather than updating nothing.
            existing.delete(timeout=timeout)
            return cls.create(workspace, name, image, target=target, config=config, tags=tags,
                              description=description, wait=wait, timeout=timeout, idempotency_key=idempotency_key)
        return existing.update(image=image, config=config, tags=tags, wait=wait, timeout=timeout,
                               idempotency_key=idempotency_key)

    def update(
        self,
        *,
        image: Image | str | None = None,
        config: DeploymentConfig | Mapping[str, Any] | str | Path | None = None,
        tags: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """Move the service to another image and/or configuration.

        A new image (or new limits) rolls out: new replicas start, and only when all of them are
        ready are the old ones taken out of the rotation, drained and stopped; if the new ones
        never get ready the old ones keep serving and DeploymentError says why. A mapping
        ``config`` changes only the fields it names. Nothing changed on a Healthy service = no-op
        (the activity succeeds at once), which makes a re-run DAG cheap. What it changes of the
        current image and configuration is logged (a warning: it may undo a change made by hand)
        and kept on ``changes`` and in the activity's first message.
        """
        ws = self.workspace
        ws.require(Action.WRITE)
        self.refresh()
        self._require_this_host()
        if self.state is DeploymentState.DELETING:
            raise ConflictError(f"Deployment '{self.name}' in workspace '{ws.name}' is being deleted")
        image_record = resolve_image(ws, image if image is not None else self.image_id)
        if isinstance(config, Mapping):
            settings = DeploymentConfig.coerce({**self.record.config, **dict(config)})
        elif config is not None:
            settings = DeploymentConfig.coerce(config)
        else:
            settings = self.config
        if (remote := self._remote()) is not None:
            earlier, activity_id = keyed_activity(ws, idempotency_key, KIND_UPDATE, self.name)
            if earlier is not None:
                return self.wait_for_deployment(timeout=timeout, activity_id=earlier.activity_id) if wait else self
            return remote_lifecycle.update(self, remote, image_record, settings, activity_id, tags, wait, timeout)
        if settings.port not in (None, self._port()):
            raise ValidationError("The port of a deployment cannot change; delete it and create it again")
        driver = build_replica_driver(self.target)
        driver.validate(image_record)
        earlier, activity_id = keyed_activity(ws, idempotency_key, KIND_UPDATE, self.name)
        if earlier is not None:  # a retry of this very update, still going or done: follow it
            return self.wait_for_deployment(timeout=timeout, activity_id=earlier.activity_id) if wait else self
        try:
            return self._start_update(image_record, settings, driver, activity_id, tags, wait, timeout)
        except AlreadyExistsError:
            # The keyed activity id was taken between the lookup and the insert: a racing copy of
            # this task is carrying out this very update; follow it instead of updating twice.
            earlier, _ = keyed_activity(ws, idempotency_key, KIND_UPDATE, self.name)
            if earlier is None:
                raise
            return self.wait_for_deployment(timeout=timeout, activity_id=earlier.activity_id) if wait else self

    def _start_update(
        self, image_record: ImageRecord, settings: DeploymentConfig, driver: ReplicaDriver, activity_id: str | None,
        tags: Mapping[str, str] | None, wait: bool, timeout: float | None,
    ) -> Deployment:
        ws, store = self.workspace, self.workspace.store
        self.changes = describe_changes(self.image_id, image_record.id, self.config, settings)
        queued = changes_message(self.name, self.changes) if self.changes else "Queued"
        if self.changes:
            log.warning("%s", queued)
        unchanged = (image_record.id == self.image_id == self.serving_image_id
                     and settings == self.config)  # as models: a field added since compares as its default
        if unchanged and self.state is DeploymentState.HEALTHY and self.supervisor_alive():
            activity = store.create_activity(ws.name, kind=KIND_UPDATE, target_id=self.name,
                                             message="No change", activity_id=activity_id)
            store.update_activity(activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                                  message=f"Deployment '{self.name}' already serves {image_record.id}; no change")
            self.record = store.update_deployment(ws.name, self.name, activity_id=activity.activity_id, tags=tags)
            return self
        activity = store.create_activity(ws.name, kind=KIND_UPDATE, target_id=self.name, message=queued,
                                         activity_id=activity_id)
        self.record = store.update_deployment(
            ws.name, self.name, image_id=image_record.id, config=settings.model_dump(mode="json"),
            state=DeploymentState.TRANSITIONING, activity_id=activity.activity_id, tags=tags, error="",
            next_generation=True,
        )
        self._write_scoring_config()
        self._write_desired("update", driver.image_payload(image_record), settings, activity.activity_id)
        if not self.supervisor_alive():
            self._start_supervisor()
        if wait:
            self.wait_for_deployment(timeout=timeout)
        return self

    def delete(self, *, wait: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop and remove the service (its replicas, front, files, keys). Idempotent: deleting a
        deployment that is already gone does nothing."""
        ws, store = self.workspace, self.workspace.store
        ws.require(Action.WRITE)
        try:
            self.refresh()
        except DeploymentNotFoundError:
            self._forget()
            return
        if (remote := self._remote()) is not None:
            return remote_lifecycle.delete(self, remote, wait=wait, timeout=timeout)
        self._require_this_host()
        self._forget_keys()  # refused from now on, whatever happens next
        activity = store.create_activity(ws.name, kind=KIND_DELETE, target_id=self.name, message="Queued")
        self.record = store.update_deployment(ws.name, self.name, state=DeploymentState.DELETING,
                                              activity_id=activity.activity_id, next_generation=True)
        supervisor = self.supervision.pid()
        if supervisor is not None:
            self._supersede_pending()
            # The supervisor needs only the operation and the generation of a delete; when its
            # desired state is unreadable, one is made from the record rather than leaving it up.
            desired = read_desired(self.folder) or DesiredState(
                workspace=ws.name, name=self.name, target=self.target, generation=0, operation="delete",
                activity_id=None, image={}, config=dict(self.record.config), port=self._port())
            write_desired(self.folder, desired.replace(
                operation="delete", generation=self.record.generation, activity_id=activity.activity_id))
            if not wait:
                return
            with contextlib.suppress(DeploymentNotFoundError):
                self.wait_for_deployment(timeout=timeout)
            # Every replica is stopped once the activity ends; the supervisor's own exit follows
            # (it removes the deployment's folder last).
            self.supervision.wait_gone(supervisor, timeout=30)
        else:
            # Nobody supervises it (machine restarted, supervisor killed): clean up from here.
            build_replica_driver(self.target).cleanup(ws.name, self.name, self.record.runtime)
            with contextlib.suppress(DeploymentNotFoundError):
                store.delete_deployment(ws.name, self.name)
            store.update_activity(activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0,
                                  message=f"Deployment '{self.name}' deleted")
        self._forget()

    @classmethod
    def delete_if_exists(
        cls, workspace: WorkspaceContext, name: str, *, wait: bool = True, timeout: float | None = DEFAULT_TIMEOUT
    ) -> bool:
        """Delete deployment ``name`` if there is one; whether there was."""
        try:
            deployment = cls.get(workspace, name)
        except DeploymentNotFoundError:
            return False
        deployment.delete(wait=wait, timeout=timeout)
        return True

    @classmethod
    def restore(
        cls, workspace: WorkspaceContext, *, wait: bool = True, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[str]:
        """Bring every deployment of this machine back to its recorded state (after a reboot or
        killed supervisors): a supervisor is started for each one that should run and has none,
        whatever state a waiter recorded when it found the supervisor gone; deletions that were
        interrupted are finished. Only a create its own supervisor judged failed (and then stopped)
        stays down. Returns the names acted on."""
        return restore_all(cls, workspace, wait=wait, timeout=timeout)

    # ------------------------------------------------------------------ registry
    @classmethod
    def get(cls, workspace: WorkspaceContext, name: str) -> Deployment:
        return cls(workspace, workspace.store.get_deployment(workspace.name, name))

    @classmethod
    def list(
        cls,
        workspace: WorkspaceContext,
        *,
        image: str | Image | None = None,
        state: DeploymentState | str | None = None,
        target: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Deployment]:
        """Deployments matching every filter, by name. ``image``: an Image, ``"name:version"`` or
        ``"name"``; ``tags`` values of ``"*"`` match any value."""
        image_filter = image if image is None or isinstance(image, str) else image.id
        records = workspace.store.search_deployments(
            workspace.name, image=image_filter, state=None if state is None else DeploymentState(state),
            target=target, tags=tags,
        )
        return [cls(workspace, r) for r in records]

    def refresh(self) -> Deployment:
        self.record = self.workspace.store.get_deployment(self.workspace.name, self.name)
        return self

    @property
    def activity(self) -> ActivityRecord:
        """The latest create/update/delete activity."""
        if self.record.activity_id is None:
            raise NotFoundError(f"Deployment '{self.name}' has no activity")
        return get_activity(self.workspace, self.record.activity_id)

    def waiter(self, activity_id: str | None = None, *, on_progress: Any = None) -> ActivityWaiter:
        """The waiter of the latest activity (or ``activity_id``), watching the supervisor."""
        activity_id = activity_id or self.record.activity_id
        if activity_id is None:
            raise NotFoundError(f"Deployment '{self.name}' has no activity")
        return ActivityWaiter(self.workspace, activity_id, worker=self.worker_check(), on_progress=on_progress)

    def wait_for_deployment(
        self, *, timeout: float | None = DEFAULT_TIMEOUT, poll_interval: float = 0.25, raise_on_error: bool = True,
        activity_id: str | None = None, on_progress: Any = None,
    ) -> Deployment:
        """Block until the latest activity (or ``activity_id``) ends; DeploymentError if it failed.
        A supervisor that died meanwhile fails the activity (with its log's end) instead of leaving
        callers waiting; WaitTimeoutError after ``timeout`` seconds."""
        if (activity_id or self.record.activity_id) is None:
            return self
        try:
            activity = self.waiter(activity_id, on_progress=on_progress).wait(
                timeout=timeout, poll_interval=poll_interval)
        except WaitTimeoutError as exc:
            raise WaitTimeoutError(f"Deployment '{self.name}': {exc}", activity_id=exc.activity_id) from None
        with contextlib.suppress(DeploymentNotFoundError):
            self.refresh()
        if raise_on_error and activity.status is not ActivityStatus.SUCCEEDED:
            raise DeploymentError(
                f"Deployment '{self.name}' in workspace '{self.workspace.name}': {activity.kind} "
                f"{activity.status.value}: {activity.error or activity.message}",
                deployment=self.name, error=activity.error,
            )
        return self

    def worker_check(self) -> WorkerCheck:
        """How a waiter tells that this deployment's supervisor is gone (see ``watch.py``); on a remote
        target, each look reads the target's status and records it (``remote/lifecycle.py``)."""
        remote = self._remote()
        return supervisor_check(self) if remote is None else remote_lifecycle.remote_check(self, remote)

    # ------------------------------------------------------------------ keys
    def get_keys(self) -> tuple[str, str]:
        """(primary, secondary). Needs a role that may read secrets (Owner, Contributor)."""
        return read_keys(self.workspace, self.name)

    def regenerate_key(self, which: str = "primary", *, confirm_timeout: float = 10.0) -> str:
        """Replace one key; the old one is refused from the moment this returns (it waits until
        the service refuses it, up to ``confirm_timeout`` seconds). Returns the new key."""
        if which not in KEY_NAMES:
            raise ValidationError(f"which must be one of {KEY_NAMES}, not {which!r}")
        ws = self.workspace
        ws.require(Action.WRITE)
        old_hash = getattr(self.refresh().record, f"{which}_key_hash")
        key = generate_key()
        store_keys(ws, self.name, {which: key})
        self.record = ws.store.update_deployment(ws.name, self.name, **{f"{which}_key_hash": hash_key(key)})
        if (remote := self._remote()) is not None:
            remote_lifecycle.update_keys(self, remote)  # refused once the replicas re-read the Secret/group
            return key
        self._write_scoring_config()
        if self.config.auth_enabled and old_hash and self.state is DeploymentState.HEALTHY:
            confirm_key(self.name, self._base_url(), key, replicas=len(self.replicas),
                                       timeout=confirm_timeout)
        return key

    # ------------------------------------------------------------------ using it
    def run(self, input_data: Any, *, timeout: float = 30.0) -> Any:
        """Score ``input_data`` (JSON-serialisable, e.g. ``{"data": [[...]]}``) and return the answer."""
        self.workspace.require(Action.READ)
        if not self.scoring_uri:
            raise ConflictError(f"Deployment '{self.name}' has no scoring URI yet")
        key = self.get_keys()[0] if self.config.auth_enabled else None
        return score(self.name, self.scoring_uri, input_data, key=key, timeout=timeout)

    def get_logs(self, *, tail: int | None = 200) -> str:
        """The supervisor's log and each current replica's, last ``tail`` lines of each (None = all);
        on a remote target, each pod's (or the container group's) log."""
        if (remote := self._remote()) is not None:
            return remote.logs(self.name, tail=tail)
        return self.supervision.logs(self.refresh().replicas, tail=tail)

    def get_telemetry(self) -> dict[str, Any]:
        """Request counts, errors and latency percentiles as the supervisor last recorded them in
        the workspace (every 10 s), plus the number of input/output samples collected to the
        datastore (``deployments/<name>/collected/``)."""
        if (remote := self._remote()) is not None:
            return remote_lifecycle.telemetry(remote)
        telemetry = dict(self.refresh().record.runtime.get("telemetry") or {})
        telemetry.setdefault("requests", 0)
        return telemetry

    # ------------------------------------------------------------------ supervisor plumbing
    def supervisor_alive(self) -> bool:
        """Whether this deployment's supervisor runs on this machine (or is starting, from here)."""
        return self.supervision.alive()

    def _remote(self) -> RemoteTarget | None:
        """The remote target (kubernetes, aci) this deployment runs on; None for local and docker."""
        return remote_lifecycle.of_record(self.workspace, self.record)

    def _supervisor_host(self) -> str | None:
        return (self.record.runtime.get("supervisor") or {}).get("host")

    def _require_this_host(self) -> None:
        """Deployments are supervised where they were created: refuse to act from elsewhere."""
        host = self._supervisor_host()
        if host and host != this_host() and not self.supervisor_alive():
            raise ConflictError(
                f"Deployment '{self.name}' is supervised on host {host!r}, not here ({this_host()!r}); "
                "manage it from that machine"
            )

    def _start_supervisor(self) -> int:
        return self.supervision.start(store_uri=self.workspace.store_uri, principal=self.workspace.principal)

    def _write_scoring_config(self) -> None:
        self.supervision.write_scoring_config(
            self.config.scoring_config(self.record.primary_key_hash, self.record.secondary_key_hash))

    def _write_desired(self, operation: Operation, image: dict[str, Any], settings: DeploymentConfig,
                       activity_id: str | None) -> None:
        self._supersede_pending()
        write_desired(self.folder, DesiredState(
            workspace=self.workspace.name, name=self.name, target=self.target, generation=self.record.generation,
            operation=operation, activity_id=activity_id, image=image, config=settings.model_dump(mode="json"),
            port=self._port(),
        ))

    def _supersede_pending(self) -> None:
        """End the activity of a desired state the supervisor may never apply: it applies only the
        newest generation, so an update replaced before it started would otherwise stay Running
        and its waiter would wait until its timeout."""
        previous = read_desired(self.folder)
        if previous is None or not previous.activity_id or previous.generation >= self.record.generation:
            return
        with contextlib.suppress(NotFoundError):  # terminal activities are left as they are
            self.workspace.store.update_activity(
                previous.activity_id, status=ActivityStatus.CANCELED,
                error=f"Superseded by generation {self.record.generation} of deployment '{self.name}'",
                message="Superseded",
            )

    def _port(self) -> int:
        port = self.record.runtime.get("port")
        if port is None and self.scoring_uri:
            port = int(self.scoring_uri.rsplit(":", 1)[1].split("/", 1)[0])
        return int(port)

    def _base_url(self) -> str:
        return f"http://127.0.0.1:{self._port()}"

    def _forget_keys(self) -> None:
        forget_keys(self.workspace, self.name)

    def _forget(self) -> None:
        """What is left once the record is gone: the keys and the local folder."""
        self._forget_keys()
        self.supervision.remove_folder()


def deployment_worker_check(ctx: WorkspaceContext, name: str) -> WorkerCheck | None:
    """How a waiter tells that deployment ``name``'s supervisor is gone (None: no such deployment)."""
    try:
        return Deployment.get(ctx, name).worker_check()
    except DeploymentNotFoundError:
        return None
