"""The workspace: the object users start from, as in azureml-core.

    ws = Workspace.create("demo")                      # or Workspace.get("demo")
    run = ws.experiment("iris").submit("src/", RunConfiguration(script="train.py"))
    run.wait_for_completion(show_output=True)
    model = ws.register_model("iris", run_id=run.id, run_path="outputs/model.pkl")
    image = ws.create_image("iris-scorer", ImageSpec(models=[model.id], builtin_scorer="sklearn"))
    service = ws.deploy_webservice("iris-svc", image)

A workspace is a name in a metadata store (SQLite under $AML_HOME by default, PostgreSQL when a
URI says so) plus the datastores, compute targets, role assignments and secrets registered in it.
``Workspace`` is a facade: it is a ``WorkspaceContext`` (identity, authorization, store,
datastores) that also administers the workspace and hands out the features -- experiments and
runs, the model registry, images, deployments, activities -- which depend on the context only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_aml import config
from airflow_aml.activities import DEPLOYMENT_KINDS, ActivityKind, ActivityWaiter, ProgressCallback, WorkerCheck
from airflow_aml.activities import get_activity as _get_activity
from airflow_aml.activities import list_activities as _list_activities
from airflow_aml.compute import check_compute_config, compute_kinds
from airflow_aml.context import DATASTORE_PROPERTY, DEFAULT_DATASTORE, SNAPSHOT_NAME, WorkspaceContext, run_prefix
from airflow_aml.datastores import SECRET_KEYS, SECRET_SUFFIX, AbstractDatastore, build_datastore
from airflow_aml.deployments import Deployment, edge
from airflow_aml.deployments.deployment import deployment_worker_check
from airflow_aml.entities import (
    ActivityRecord,
    ComputeTargetRecord,
    DatastoreRecord,
    Role,
    RoleAssignment,
    WorkspaceRecord,
)
from airflow_aml.exceptions import NotFoundError, ValidationError
from airflow_aml.experiment import Experiment
from airflow_aml.images import Image, ImageSpec
from airflow_aml.images.image import image_worker_check
from airflow_aml.models import Model
from airflow_aml.names import validate_name, validate_secret_name
from airflow_aml.roles import Action
from airflow_aml.runs import Run, reap_lost_runs, run_worker_check
from airflow_aml.store import get_store


class Workspace(WorkspaceContext):
    """A handle on one workspace. Cheap to build; talks to the store only when asked."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def get(cls, name: str, *, store_uri: str | None = None, principal: str | None = None) -> Workspace:
        """The workspace ``name`` (WorkspaceNotFoundError otherwise)."""
        return cls.open(name, store_uri=store_uri, principal=principal)

    @classmethod
    def list(cls, *, store_uri: str | None = None) -> list[WorkspaceRecord]:
        return get_store(config.absolute_store_uri(store_uri) if store_uri else config.default_store_uri()) \
            .list_workspaces()

    # ------------------------------------------------------------------ roles
    def assign_role(self, principal: str, role: Role | str) -> RoleAssignment:
        self.require(Action.MANAGE)
        try:
            role = Role(role)
        except ValueError:
            raise ValidationError(f"Unknown role {role!r}; valid: {', '.join(r.value for r in Role)}") from None
        return self.store.assign_role(self.name, principal, role)

    def remove_role(self, principal: str) -> None:
        self.store.remove_role(self.name, principal)

    def list_role_assignments(self) -> list[RoleAssignment]:
        return self.store.list_role_assignments(self.name)

    # ------------------------------------------------------------------ secrets
    def set_secret(self, name: str, value: str) -> None:
        self.require(Action.MANAGE)
        self.vault.set(validate_secret_name(name), value)

    def get_secret(self, name: str) -> str:
        return self.vault.get(name)

    def list_secrets(self) -> list[str]:
        """Names only: values are never listed."""
        return self.vault.names()

    def delete_secret(self, name: str) -> None:
        self.require(Action.MANAGE)
        self.vault.delete(name)

    # ------------------------------------------------------------------ datastores
    def register_datastore(
        self, name: str, *, kind: str = "local", config: Mapping[str, Any] | None = None,
        set_default: bool = False, overwrite: bool = False,
    ) -> AbstractDatastore:
        self.require(Action.MANAGE)
        validate_name("datastore", name)
        settings = dict(config or {})
        for key in SECRET_KEYS.get(kind, ()):
            if key in settings:
                raise ValidationError(
                    f"Datastore {name!r}: {key!r} is a credential and is never stored in the datastore "
                    f"record; store it with set_secret(<secret name>, value) and pass {key + SECRET_SUFFIX!r}"
                )
        # Fails on a bad kind/config (or an unknown secret) before anything is stored.
        build_datastore(name, kind, self._with_secrets(settings))
        self.store.register_datastore(self.name, name, kind=kind, config=settings, overwrite=overwrite)
        self.forget_datastore(name)
        if set_default:
            self.set_default_datastore(name)
        return self.get_datastore(name)

    def set_default_datastore(self, name: str) -> None:
        self.require(Action.MANAGE)
        self.store.get_datastore(self.name, name)
        self.store.set_default_datastore(self.name, name)
        self.refresh()

    @property
    def datastores(self) -> dict[str, DatastoreRecord]:
        return {d.name: d for d in self.store.list_datastores(self.name)}

    # ------------------------------------------------------------------ compute targets
    def register_compute_target(
        self, name: str, *, kind: str = "local", config: Mapping[str, Any] | None = None, overwrite: bool = False
    ) -> ComputeTargetRecord:
        """Attach a compute target (a name runs refer to in ``RunConfiguration.target``)."""
        self.require(Action.MANAGE)
        validate_name("compute target", name)
        if kind not in compute_kinds():
            raise ValidationError(
                f"Unknown compute kind {kind!r} for target {name!r}; valid: {', '.join(compute_kinds())}"
            )
        check_compute_config(kind, dict(config or {}))
        return self.store.register_compute_target(
            self.name, name, kind=kind, config=dict(config or {}), overwrite=overwrite
        )

    @property
    def compute_targets(self) -> dict[str, ComputeTargetRecord]:
        return {c.name: c for c in self.store.list_compute_targets(self.name)}

    def delete_compute_target(self, name: str) -> None:
        self.store.delete_compute_target(self.name, name)

    # ------------------------------------------------------------------ experiments and runs
    def experiment(self, name: str) -> Experiment:
        return Experiment(self, name)

    @property
    def experiments(self) -> dict[str, Experiment]:
        return {e.name: Experiment(self, e.name) for e in self.store.list_experiments(self.name)}

    def get_experiment(self, name: str) -> Experiment:
        """An existing experiment; ExperimentNotFoundError otherwise (``experiment()`` does not check)."""
        self.store.get_experiment(self.name, validate_name("experiment", name))
        return Experiment(self, name)

    def get_run(self, run_id: str) -> Run:
        return Run.get(self, run_id)

    def reap_lost_runs(self, *, lost_after: float | None = None) -> list[str]:
        """Fail the runs whose supervisor stopped beating (killed, OOM, reboot); see
        ``runs.reap_lost_runs``. Returns their ids."""
        return reap_lost_runs(self, lost_after=lost_after)

    # ------------------------------------------------------------------ model registry
    def register_model(self, name: str, **kwargs: Any) -> Model:
        """See ``Model.register``: from a local path, a run's files, or a datastore path."""
        return Model.register(self, name, **kwargs)

    def get_model(self, name: str, version: int | None = None) -> Model:
        return Model.get(self, name, version)

    def list_models(
        self, *, name: str | None = None, tags: Mapping[str, str] | None = None, latest: bool = False
    ) -> list[Model]:
        return Model.list(self, name=name, tags=tags, latest=latest)

    # ------------------------------------------------------------------ images
    def create_image(self, name: str, spec: ImageSpec | Mapping[str, Any] | str | Path, **kwargs: Any) -> Image:
        """See ``Image.create``: builder=, tags=, wait=, idempotency_key=."""
        return Image.create(self, name, spec, **kwargs)

    def get_image(self, name: str, version: int | None = None) -> Image:
        return Image.get(self, name, version)

    def list_images(
        self, *, name: str | None = None, tags: Mapping[str, str] | None = None, model: str | Model | None = None,
        latest: bool = False,
    ) -> list[Image]:
        """See ``Image.list``: ``model`` is a Model, ``"name:version"`` or ``"name"``."""
        return Image.list(self, name=name, tags=tags, model=model, latest=latest)

    # ------------------------------------------------------------------ deployments
    def deploy_webservice(self, name: str, image: Image | str, **kwargs: Any) -> Deployment:
        """Create or update web service ``name``; see ``Deployment.deploy`` (target=, config=, wait= ...)."""
        return Deployment.deploy(self, name, image, **kwargs)

    def get_deployment(self, name: str) -> Deployment:
        return Deployment.get(self, name)

    def list_deployments(self, **filters: Any) -> list[Deployment]:
        """See ``Deployment.list``: image=, state=, target=, tags=."""
        return Deployment.list(self, **filters)

    # ------------------------------------------------------------------ IoT Edge modules
    def edge_manifest(self, name: str, image: Image | str, **kwargs: Any) -> tuple[dict[str, Any], str]:
        """The validated IoT Edge deployment manifest of module ``name`` and its scoring key;
        see ``deployments.edge.edge_manifest``."""
        return edge.edge_manifest(self, name, image, **kwargs)

    def deploy_edge_module(self, name: str, image: Image | str, **kwargs: Any) -> dict[str, Any]:
        """Apply module ``name`` through IoT Hub (device_id= or target_condition=,
        hub_connection_secret=); see ``deployments.edge.deploy_edge_module``."""
        return edge.deploy_edge_module(self, name, image, **kwargs)

    def export_edge_module(self, name: str, image: Image | str, folder: str | Path, **kwargs: Any) -> dict[str, Any]:
        """Image tarball + manifest for a device without a hub; see ``deployments.edge.export_edge_module``."""
        return edge.export_edge_module(self, name, image, folder, **kwargs)

    def collect_edge_telemetry(self, name: str, folder: str | Path) -> dict[str, Any]:
        """The module's new request lines from its telemetry folder into the workspace."""
        return edge.collect_edge_telemetry(self, name, folder)

    # ------------------------------------------------------------------ activities
    def get_activity(self, activity_id: str) -> ActivityRecord:
        return _get_activity(self, activity_id)

    def list_activities(self, *, target_id: str | None = None, kind: str | None = None) -> list[ActivityRecord]:
        return _list_activities(self, target_id=target_id, kind=kind)

    def activity_waiter(self, activity_id: str, *, on_progress: ProgressCallback | None = None) -> ActivityWaiter:
        """A waiter for any activity of this workspace, which also watches the process carrying it
        (a run's supervisor, a build worker, a deployment's supervisor)."""
        activity = self.get_activity(activity_id)
        return ActivityWaiter(self, activity_id, worker=self._worker_check(activity), on_progress=on_progress)

    def wait_for_activity(
        self, activity_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> ActivityRecord:
        """Wait until the activity ends and return its final record (Succeeded, Failed or Canceled);
        WaitTimeoutError after ``timeout`` seconds."""
        return self.activity_waiter(activity_id, on_progress=on_progress).wait(
            timeout=timeout, poll_interval=poll_interval)

    def _worker_check(self, activity: ActivityRecord) -> WorkerCheck | None:
        """The check of the feature that carries ``activity`` out; None when there is nothing to
        watch (an activity of another kind, or whose run / image is gone)."""
        try:
            if activity.kind == ActivityKind.RUN:
                return run_worker_check(self, self.store.get_run(activity.target_id))
            if activity.kind == ActivityKind.IMAGE_BUILD:
                return image_worker_check(self, activity.target_id)
            if activity.kind in DEPLOYMENT_KINDS:
                return deployment_worker_check(self, activity.target_id)
        except (NotFoundError, ValidationError):
            return None
        return None


__all__ = [
    "DATASTORE_PROPERTY",
    "DEFAULT_DATASTORE",
    "SNAPSHOT_NAME",
    "Experiment",
    "Workspace",
    "run_prefix",
]
