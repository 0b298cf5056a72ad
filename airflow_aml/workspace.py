"""The workspace: the top-level object of the SDK, as in azureml-core.

    ws = Workspace.create("demo")                      # or Workspace.get("demo")
    run = ws.experiment("iris").submit("src/", RunConfiguration(script="train.py"))
    run.wait_for_completion(show_output=True)

A workspace is a name in a metadata store (SQLite under $AML_HOME by default, PostgreSQL when a
URI says so) plus the datastores, compute targets, role assignments and secrets registered in it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_aml import config
from airflow_aml.datastores import AbstractDatastore, build_datastore
from airflow_aml.datastores.readonly import ReadOnlyDatastore
from airflow_aml.entities import (
    ActivityRecord,
    ComputeTargetRecord,
    DatastoreRecord,
    MetricCondition,
    Role,
    RoleAssignment,
    RunQuery,
    RunStatus,
    WorkspaceRecord,
)
from airflow_aml.exceptions import (
    ActivityNotFoundError,
    AlreadyExistsError,
    AuthorizationError,
    ValidationError,
)
from airflow_aml.names import validate_name
from airflow_aml.roles import Action, allows
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.secrets_store import SecretsVault
from airflow_aml.store import AbstractStore, get_store

if TYPE_CHECKING:
    from airflow_aml.deployments import Deployment
    from airflow_aml.images import Image, ImageSpec
    from airflow_aml.models import Model
    from airflow_aml.runtime.run import Run

DEFAULT_DATASTORE = "workspaceblobstore"
# The datastore that holds a run's files, fixed when the run is created: changing the workspace's
# default later must not hide the files of earlier runs.
DATASTORE_PROPERTY = "aml.datastore"
SNAPSHOT_NAME = "snapshot.zip"


def run_prefix(run_id: str) -> str:
    """Datastore folder that holds one run's files (outputs/, logs/, images/, snapshot.zip)."""
    return f"runs/{run_id}"


class Workspace:
    """A handle on one workspace. Cheap to build; talks to the store only when asked."""

    def __init__(self, record: WorkspaceRecord, store: AbstractStore, store_uri: str, principal: str) -> None:
        self._record = record
        self.store = store
        self.store_uri = store_uri
        self.principal = principal
        self._datastores: dict[str, AbstractDatastore] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        name: str,
        *,
        store_uri: str | None = None,
        datastore_root: str | Path | None = None,
        description: str = "",
        exist_ok: bool = False,
        principal: str | None = None,
    ) -> Workspace:
        """Create a workspace with a local default datastore; its creator becomes Owner."""
        validate_name("workspace", name)
        uri = store_uri or config.default_store_uri()
        store = get_store(uri)
        who = principal or config.current_principal()
        try:
            record = store.create_workspace(
                name, description=description, created_by=who, default_datastore=DEFAULT_DATASTORE
            )
        except AlreadyExistsError:
            if not exist_ok:
                raise
            return cls.get(name, store_uri=uri, principal=who)
        root = Path(datastore_root) if datastore_root else config.default_datastore_root(name)
        store.register_datastore(name, DEFAULT_DATASTORE, kind="local", config={"root": str(root.resolve())})
        store.assign_role(name, who, Role.OWNER)
        return cls(record, store, uri, who)

    @classmethod
    def get(cls, name: str, *, store_uri: str | None = None, principal: str | None = None) -> Workspace:
        uri = store_uri or config.default_store_uri()
        store = get_store(uri)
        return cls(store.get_workspace(name), store, uri, principal or config.current_principal())

    @classmethod
    def list(cls, *, store_uri: str | None = None) -> list[WorkspaceRecord]:
        return get_store(store_uri or config.default_store_uri()).list_workspaces()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def record(self) -> WorkspaceRecord:
        return self._record

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r}, store={config.redact(self.store_uri)!r})"

    # ------------------------------------------------------------------ roles
    @cached_property
    def role(self) -> Role | None:
        """The acting principal's role, read once per handle (role changes need a new handle)."""
        return self.store.get_role(self.name, self.principal)

    def require(self, action: Action) -> None:
        if not allows(self.role, action):
            raise AuthorizationError(self._refusal(action))

    def _refusal(self, action: Action) -> str:
        held = self.role.value if self.role else "no role"
        return f"Principal {self.principal!r} ({held}) may not {action.value} in workspace {self.name!r}"

    def assign_role(self, principal: str, role: Role | str) -> RoleAssignment:
        self.require(Action.MANAGE)
        try:
            role = Role(role)
        except ValueError:
            raise ValidationError(f"Unknown role {role!r}; valid: {', '.join(r.value for r in Role)}") from None
        return self.store.assign_role(self.name, principal, role)

    def remove_role(self, principal: str) -> None:
        self.require(Action.MANAGE)
        self.store.remove_role(self.name, principal)

    def list_role_assignments(self) -> list[RoleAssignment]:
        self.require(Action.READ)
        return self.store.list_role_assignments(self.name)

    # ------------------------------------------------------------------ secrets
    @cached_property
    def _vault(self) -> SecretsVault:
        return SecretsVault(self.store, self.name, config.secret_key())

    def set_secret(self, name: str, value: str) -> None:
        self.require(Action.MANAGE)
        self._vault.set(validate_name("secret", name), value)

    def get_secret(self, name: str) -> str:
        self.require(Action.READ_SECRETS)
        return self._vault.get(name)

    def list_secrets(self) -> list[str]:
        """Names only: values are never listed."""
        self.require(Action.READ)
        return self._vault.names()

    def delete_secret(self, name: str) -> None:
        self.require(Action.MANAGE)
        self._vault.delete(name)

    # ------------------------------------------------------------------ datastores
    def register_datastore(
        self, name: str, *, kind: str = "local", config: Mapping[str, Any] | None = None,
        set_default: bool = False, overwrite: bool = False,
    ) -> AbstractDatastore:
        self.require(Action.MANAGE)
        validate_name("datastore", name)
        settings = dict(config or {})
        build_datastore(name, kind, settings)  # fails on a bad kind/config before anything is stored
        self.store.register_datastore(self.name, name, kind=kind, config=settings, overwrite=overwrite)
        self._datastores.pop(name, None)
        if set_default:
            self.set_default_datastore(name)
        return self.get_datastore(name)

    def set_default_datastore(self, name: str) -> None:
        self.require(Action.MANAGE)
        self.store.get_datastore(self.name, name)
        self.store.set_default_datastore(self.name, name)
        self._record = self.store.get_workspace(self.name)

    def get_datastore(self, name: str) -> AbstractDatastore:
        """The datastore ``name``; read-only for a principal who may not write (a Reader)."""
        self.require(Action.READ)
        if name not in self._datastores:
            record = self.store.get_datastore(self.name, name)
            datastore = build_datastore(record.name, record.kind, dict(record.config))
            if not allows(self.role, Action.WRITE):
                datastore = ReadOnlyDatastore(datastore, self._refusal(Action.WRITE))
            self._datastores[name] = datastore
        return self._datastores[name]

    def get_default_datastore(self) -> AbstractDatastore:
        return self.get_datastore(self._record.default_datastore)

    @property
    def datastores(self) -> dict[str, DatastoreRecord]:
        self.require(Action.READ)
        return {d.name: d for d in self.store.list_datastores(self.name)}

    # ------------------------------------------------------------------ compute targets
    def register_compute_target(
        self, name: str, *, kind: str = "local", config: Mapping[str, Any] | None = None, overwrite: bool = False
    ) -> ComputeTargetRecord:
        """Attach a compute target (a name runs refer to in ``RunConfiguration.target``)."""
        from airflow_aml.compute import compute_kinds

        self.require(Action.MANAGE)
        validate_name("compute target", name)
        if kind not in compute_kinds():
            raise ValidationError(
                f"Unknown compute kind {kind!r} for target {name!r}; valid: {', '.join(compute_kinds())}"
            )
        return self.store.register_compute_target(
            self.name, name, kind=kind, config=dict(config or {}), overwrite=overwrite
        )

    @property
    def compute_targets(self) -> dict[str, ComputeTargetRecord]:
        self.require(Action.READ)
        return {c.name: c for c in self.store.list_compute_targets(self.name)}

    def delete_compute_target(self, name: str) -> None:
        self.require(Action.MANAGE)
        self.store.delete_compute_target(self.name, name)

    # ------------------------------------------------------------------ experiments and runs
    def experiment(self, name: str) -> Experiment:
        return Experiment(self, name)

    @property
    def experiments(self) -> dict[str, Experiment]:
        self.require(Action.READ)
        return {e.name: Experiment(self, e.name) for e in self.store.list_experiments(self.name)}

    def get_experiment(self, name: str) -> Experiment:
        """An existing experiment; ExperimentNotFoundError otherwise (``experiment()`` does not check)."""
        self.require(Action.READ)
        self.store.get_experiment(self.name, validate_name("experiment", name))
        return Experiment(self, name)

    def get_run(self, run_id: str) -> Run:
        from airflow_aml.runtime.run import Run

        self.require(Action.READ)
        return Run.get(self, run_id)

    # ------------------------------------------------------------------ model registry
    def register_model(self, name: str, **kwargs: Any) -> Model:
        """See ``Model.register``: from a local path, a run's files, or a datastore path."""
        from airflow_aml.models import Model

        return Model.register(self, name, **kwargs)

    def get_model(self, name: str, version: int | None = None) -> Model:
        from airflow_aml.models import Model

        return Model.get(self, name, version)

    def list_models(
        self, *, name: str | None = None, tags: Mapping[str, str] | None = None, latest: bool = False
    ) -> list[Model]:
        from airflow_aml.models import Model

        return Model.list(self, name=name, tags=tags, latest=latest)

    # ------------------------------------------------------------------ images
    def create_image(self, name: str, spec: ImageSpec | Mapping[str, Any] | str | Path, **kwargs: Any) -> Image:
        """See ``Image.create``: builder=, tags=, wait=, idempotency_key=."""
        from airflow_aml.images import Image

        return Image.create(self, name, spec, **kwargs)

    def get_image(self, name: str, version: int | None = None) -> Image:
        from airflow_aml.images import Image

        return Image.get(self, name, version)

    def list_images(
        self, *, name: str | None = None, tags: Mapping[str, str] | None = None, model: str | Model | None = None,
        latest: bool = False,
    ) -> list[Image]:
        """See ``Image.list``: ``model`` is a Model, ``"name:version"`` or ``"name"``."""
        from airflow_aml.images import Image

        return Image.list(self, name=name, tags=tags, model=model, latest=latest)

    # ------------------------------------------------------------------ activities
    # ------------------------------------------------------------------ deployments
    def deploy_webservice(self, name: str, image: Image | str, **kwargs: Any) -> Deployment:
        """Create or update web service ``name``; see ``Deployment.deploy`` (target=, config=, wait= ...)."""
        from airflow_aml.deployments import Deployment

        return Deployment.deploy(self, name, image, **kwargs)

    def get_deployment(self, name: str) -> Deployment:
        from airflow_aml.deployments import Deployment

        return Deployment.get(self, name)

    def list_deployments(self, **filters: Any) -> list[Deployment]:
        """See ``Deployment.list``: image=, state=, target=, tags=."""
        from airflow_aml.deployments import Deployment

        return Deployment.list(self, **filters)

    def get_activity(self, activity_id: str) -> ActivityRecord:
        self.require(Action.READ)
        activity = self.store.get_activity(activity_id)
        if activity.workspace != self.name:
            raise ActivityNotFoundError(f"Activity {activity_id!r} not found in workspace {self.name!r}")
        return activity

    def list_activities(self, *, target_id: str | None = None, kind: str | None = None) -> list[ActivityRecord]:
        self.require(Action.READ)
        return self.store.list_activities(self.name, target_id=target_id, kind=kind)


class Experiment:
    """A named group of runs; created in the store when its first run is."""

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = validate_name("experiment", name)

    def __repr__(self) -> str:
        return f"Experiment(workspace={self.workspace.name!r}, name={self.name!r})"

    # ------------------------------------------------------------------ creating runs
    def start_logging(
        self, *, display_name: str | None = None, tags: Mapping[str, str] | None = None,
        snapshot_directory: str | Path | None = None,
    ) -> Run:
        """An interactive run in this process (a notebook, a script run by hand): status Running."""
        from airflow_aml.runtime.run import Run

        self.workspace.require(Action.WRITE)
        record = self.workspace.store.create_run(
            workspace=self.workspace.name, experiment=self.name, submitted_by=self.workspace.principal,
            display_name=display_name, tags=tags, status=RunStatus.RUNNING,
            properties={DATASTORE_PROPERTY: self.workspace.record.default_datastore},
        )
        run = Run(self.workspace, record)
        if snapshot_directory is not None:
            run.take_snapshot(snapshot_directory)
        return run

    def submit(
        self,
        source_directory: str | Path,
        run_config: RunConfiguration | Mapping[str, Any] | str | Path,
        *,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
        idempotency_key: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> Run:
        """Snapshot ``source_directory`` and start ``run_config`` on its compute target.

        Everything is validated before anything is written: the source directory, the run
        configuration, the compute target and the snapshot size. Returns at once; use
        ``run.wait_for_completion()`` to wait.
        """
        from airflow_aml.compute import build_compute_target
        from airflow_aml.compute.base import RunLaunch
        from airflow_aml.runtime.run import Run
        from airflow_aml.snapshots import create_snapshot

        ws = self.workspace
        ws.require(Action.WRITE)
        source = Path(source_directory)
        if not source.is_dir():
            raise ValidationError(f"Source directory {str(source)!r} does not exist or is not a directory")
        if isinstance(run_config, Mapping):
            run_config = dict(run_config)
        config_obj = RunConfiguration.coerce(run_config)  # type: ignore[arg-type]
        target = build_compute_target(ws, config_obj.target)
        target.validate(config_obj, source)
        datastore = ws.get_default_datastore()

        with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
            zip_path = Path(tmp) / SNAPSHOT_NAME
            snapshot = create_snapshot(source, zip_path)  # SnapshotTooLargeError before any record
            record = ws.store.create_run(
                workspace=ws.name, experiment=self.name, submitted_by=ws.principal,
                compute_target=config_obj.target, run_config=config_obj.to_dict(),
                display_name=display_name, tags=tags,
                properties={**(properties or {}), DATASTORE_PROPERTY: datastore.name},
                idempotency_key=idempotency_key,
            )
            activity = ws.store.create_activity(
                ws.name, kind="run", target_id=record.run_id, activity_id=record.run_id,
                message="Queued",
            )
            try:
                snapshot_path = f"{run_prefix(record.run_id)}/{SNAPSHOT_NAME}"
                datastore.upload_file(zip_path, snapshot_path, show_progress=True)
                ws.store.set_snapshot(record.run_id, snapshot.sha256)
                target.submit(
                    RunLaunch(
                        workspace=ws.name, store_uri=ws.store_uri, run_id=record.run_id,
                        principal=ws.principal, run_config=config_obj.to_dict(),
                        snapshot_path=snapshot_path, datastore=datastore.name,
                    )
                )
            except BaseException as exc:
                # The run exists now: record why it never started instead of leaving it Queued.
                message = f"Submission failed: {exc}"
                ws.store.update_run_status(record.run_id, RunStatus.FAILED, error=message)
                from airflow_aml.entities import ActivityStatus

                ws.store.update_activity(activity.activity_id, status=ActivityStatus.FAILED, error=message)
                raise
        return Run(ws, ws.store.get_run(record.run_id))

    # ------------------------------------------------------------------ querying
    def get_runs(
        self, *, status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tags: Mapping[str, str] | None = None, include_children: bool = False,
    ) -> list[Run]:
        """Runs of this experiment, newest first (top-level only unless include_children)."""
        return self.search_runs(status=status, tags=tags, include_children=include_children)

    def search_runs(
        self,
        *,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[MetricCondition | str] = (),
        order_by: str | None = None,
        descending: bool = True,
        include_children: bool = True,
        parent_run_id: str | None = None,
        max_results: int | None = None,
    ) -> list[Run]:
        """Filter by status, tags and metric conditions (``"accuracy >= 0.9"``), order by a metric."""
        from airflow_aml.runtime.run import Run

        self.workspace.require(Action.READ)
        query = RunQuery(
            experiment=self.name,
            statuses=_statuses(status),
            tags=dict(tags or {}),
            parent_run_id=parent_run_id,
            top_level_only=not include_children and parent_run_id is None,
            metric_conditions=tuple(parse_metric_condition(m) for m in metrics),
            order_by_metric=order_by,
            descending=descending,
            max_results=max_results,
        )
        return [Run(self.workspace, r) for r in self.workspace.store.search_runs(self.workspace.name, query)]

    def best_run(
        self, metric: str, *, goal: str = "maximize", include_children: bool = True,
        status: RunStatus | str | None = RunStatus.COMPLETED, tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> Run | None:
        """The run with the best latest value of ``metric``; None when no run logged it."""
        if goal not in ("maximize", "minimize"):
            raise ValidationError(f"goal must be 'maximize' or 'minimize', not {goal!r}")
        runs = self.search_runs(
            status=status, tags=tags, include_children=include_children, parent_run_id=parent_run_id,
            order_by=metric, descending=goal == "maximize",
        )
        # Ordered in the store; NaN sorts differently on SQLite and PostgreSQL, so skip it here.
        latest = self.workspace.store.get_latest_scalar_metrics([r.id for r in runs])
        for run in runs:
            value = latest.get(run.id, {}).get(metric)
            if value is not None and not math.isnan(value):
                return run
        return None

    def get_metrics_table(self, *, include_children: bool = True, as_frame: bool = False) -> Any:
        """One row per run: run id, status, tags, and the latest value of each scalar metric.

        A list of dicts, or a pandas DataFrame with ``as_frame=True`` (pandas is optional).
        """
        runs = self.search_runs(include_children=include_children)
        latest = self.workspace.store.get_latest_scalar_metrics([r.id for r in runs])
        rows = []
        for run in runs:
            record = run.record
            rows.append({
                "run_id": record.run_id, "parent_run_id": record.parent_run_id, "status": record.status.value,
                **{f"tag.{k}": v for k, v in record.tags.items()},
                **latest.get(record.run_id, {}),
            })
        if as_frame:
            try:
                import pandas as pd
            except ImportError as exc:
                raise ValidationError("as_frame=True needs pandas: pip install 'airflow-aml[pandas]'") from exc
            return pd.DataFrame(rows)
        return rows


def parse_metric_condition(value: MetricCondition | str) -> MetricCondition:
    if isinstance(value, MetricCondition):
        condition = value
    else:
        parts = str(value).split()
        if len(parts) != 3:
            raise ValidationError(f"Metric condition {value!r} must look like 'accuracy >= 0.9'")
        name, op, number = parts
        try:
            condition = MetricCondition(name, op, float(number))
        except ValueError:
            raise ValidationError(f"Metric condition {value!r}: {number!r} is not a number") from None
    if condition.op not in MetricCondition.OPS:
        raise ValidationError(f"Metric condition operator {condition.op!r} not in {', '.join(MetricCondition.OPS)}")
    return condition


def _statuses(status: RunStatus | str | Sequence[RunStatus | str] | None) -> tuple[RunStatus, ...]:
    if status is None:
        return ()
    items = [status] if isinstance(status, str | RunStatus) else list(status)
    try:
        return tuple(RunStatus(s) for s in items)
    except ValueError:
        raise ValidationError(
            f"Unknown run status in {items!r}; valid: {', '.join(s.value for s in RunStatus)}"
        ) from None


__all__ = ["Experiment", "Workspace"]
