"""The metadata store interface.

One abstract class; every method a store must implement is abstract, conveniences are concrete
and delegate (``log_metric`` -> ``log_batch``). The SQL store implements it today; an HTTP client
of the REST API will implement the same interface later, so nothing above this layer may reach
for SQL.

Every method raises the specific ``airflow_aml.exceptions`` error for an unknown object
(``RunNotFoundError`` ...) and leaves the store unchanged when it raises.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_aml.entities import (
    ActivityRecord,
    ActivityStatus,
    ComputeTargetRecord,
    DatastoreRecord,
    DeploymentRecord,
    DeploymentState,
    ExperimentRecord,
    ImageRecord,
    ImageStatus,
    LogChunk,
    Metric,
    ModelRecord,
    Role,
    RoleAssignment,
    RunQuery,
    RunRecord,
    RunStatus,
    WorkspaceRecord,
)


class AbstractStore(abc.ABC):
    # True for a store reached through the workspace service (HttpStore): its datastores and
    # secret values go through the service too, and the service's token says who is acting.
    served: bool = False
    # ----------------------------------------------------------------- workspaces
    @abc.abstractmethod
    def create_workspace(
        self, name: str, *, description: str, created_by: str, default_datastore: str,
        datastore: Mapping[str, Any] | None = None, owner: str | None = None,
    ) -> WorkspaceRecord:
        """Create a workspace; AlreadyExistsError if the name is taken.

        ``datastore`` (``{"kind", "config"}``) registers ``default_datastore`` and ``owner`` gets
        the Owner role, atomically with the workspace: no one sees it without them."""

    @abc.abstractmethod
    def get_workspace(self, name: str) -> WorkspaceRecord: ...

    @abc.abstractmethod
    def list_workspaces(self) -> list[WorkspaceRecord]: ...

    @abc.abstractmethod
    def set_default_datastore(self, workspace: str, datastore: str) -> None: ...

    # ----------------------------------------------------------------- experiments
    @abc.abstractmethod
    def get_or_create_experiment(self, workspace: str, name: str) -> ExperimentRecord:
        """Safe under concurrency: two callers creating the same name get the same record."""

    @abc.abstractmethod
    def get_experiment(self, workspace: str, name: str) -> ExperimentRecord: ...

    @abc.abstractmethod
    def list_experiments(self, workspace: str) -> list[ExperimentRecord]: ...

    # ----------------------------------------------------------------- runs
    @abc.abstractmethod
    def create_run(
        self,
        *,
        workspace: str,
        experiment: str,
        submitted_by: str,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        compute_target: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        display_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_attempt: int | None = None,
        status: RunStatus = RunStatus.QUEUED,
    ) -> RunRecord:
        """Create a run (and its experiment if unknown). A run_id is generated when not given.

        With an ``idempotency_key``, DuplicateAttemptError when a run of the same ``(key,
        idempotency_attempt)`` exists: two copies of one task never create two runs."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord: ...

    @abc.abstractmethod
    def beat_run_heartbeat(self, run_id: str) -> None:
        """The supervisor of ``run_id`` is alive: stamp it and its unfinished children."""

    @abc.abstractmethod
    def find_runs_without_heartbeat(self, workspace: str, *, since: datetime) -> list[RunRecord]:
        """Unfinished top-level runs with a heartbeat older than ``since``."""

    @abc.abstractmethod
    def update_run_status(
        self, run_id: str, status: RunStatus, *, error: str | None = None
    ) -> RunRecord:
        """Move a run to ``status``; sets start_time on Running and end_time on a terminal status.

        A run already in a terminal status is not moved again (the call returns it unchanged), so
        that a late writer cannot resurrect a canceled run.
        """

    def finish_run(
        self, run_id: str, status: RunStatus, *, workspace: str, error: str | None = None,
        metrics: Sequence[Metric] = (), activity_kind: str | None = None,
        activity_status: ActivityStatus | None = None,
    ) -> RunRecord:
        """End an in-process run: write its last ``metrics``, move it to ``status`` (as
        ``update_run_status``) and move its activities of ``activity_kind`` to ``activity_status``
        (as ``update_activity`` with progress 1, message the status, ``error``).

        This composition of the calls above is what a store reached over HTTP does; the SQL
        store overrides it with one transaction (one round trip instead of four).
        """
        if metrics:
            self.log_batch(run_id, metrics)
        record = self.update_run_status(run_id, status, error=error)
        if activity_kind is not None and activity_status is not None:
            for activity in self.list_activities(workspace, target_id=run_id, kind=activity_kind):
                self.update_activity(activity.activity_id, status=activity_status, progress=1.0,
                                     message=RunStatus(status).value, error=error)
        return record

    @abc.abstractmethod
    def request_cancel(self, run_id: str) -> RunRecord:
        """Flag the run for cancellation; the compute target that runs it reacts."""

    @abc.abstractmethod
    def set_snapshot(self, run_id: str, sha256: str) -> None: ...

    @abc.abstractmethod
    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags."""

    @abc.abstractmethod
    def delete_run_tags(self, run_id: str, keys: Sequence[str]) -> None:
        """Delete the tags named ``keys``, all or none: a key the run has no tag of is a
        NotFoundError naming it, and nothing is deleted."""

    @abc.abstractmethod
    def add_run_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        """Add properties; properties are immutable, so overwriting one with another value is a
        ConflictError."""

    @abc.abstractmethod
    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Params are immutable like properties (same rule)."""

    @abc.abstractmethod
    def search_runs(self, workspace: str, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``; ordered by the metric's latest value when asked, else newest
        first. Runs without the order metric come last."""

    @abc.abstractmethod
    def count_child_runs(self, workspace: str, run_ids: Sequence[str]) -> dict[str, int]:
        """{run_id: how many runs have it as their parent} for each of ``run_ids``, in one query:
        a runs table shows a page of top-level runs with their child counts. An id the workspace
        has no run of counts 0."""

    @abc.abstractmethod
    def find_run_by_idempotency_key(self, workspace: str, key: str) -> list[RunRecord]:
        """Every run carrying the key, newest first."""

    # ----------------------------------------------------------------- metrics
    @abc.abstractmethod
    def log_batch(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Write many metrics in one transaction (all or none)."""

    @abc.abstractmethod
    def get_metrics(self, run_id: str, names: Sequence[str] | None = None) -> list[Metric]:
        """Every logged metric of the run, in (name, step, timestamp) order."""

    @abc.abstractmethod
    def get_latest_scalar_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """{run_id: {metric name: value at the highest step}} for scalar metrics."""

    @abc.abstractmethod
    def get_latest_metrics(self, run_ids: Sequence[str]) -> dict[str, list[Metric]]:
        """{run_id: the latest Metric (value, step, timestamp) of each scalar metric, by name}: what
        MLflow shows as a run's metrics, for many runs in one call."""

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.log_batch(run_id, [metric])

    # ----------------------------------------------------------------- logs
    @abc.abstractmethod
    def append_log(self, run_id: str, stream: str, text: str) -> None: ...

    @abc.abstractmethod
    def read_log(self, run_id: str, *, after_seq: int = 0) -> list[LogChunk]:
        """Chunks with seq > after_seq, in order; poll with the last seq seen to follow a log."""

    # ----------------------------------------------------------------- datastores
    @abc.abstractmethod
    def register_datastore(
        self, workspace: str, name: str, *, kind: str, config: Mapping[str, Any], overwrite: bool = False
    ) -> DatastoreRecord: ...

    @abc.abstractmethod
    def get_datastore(self, workspace: str, name: str) -> DatastoreRecord: ...

    @abc.abstractmethod
    def list_datastores(self, workspace: str) -> list[DatastoreRecord]: ...

    @abc.abstractmethod
    def delete_datastore(self, workspace: str, name: str) -> None:
        """ConflictError for the default datastore."""

    # ----------------------------------------------------------------- compute targets
    @abc.abstractmethod
    def register_compute_target(
        self, workspace: str, name: str, *, kind: str, config: Mapping[str, Any], overwrite: bool = False
    ) -> ComputeTargetRecord: ...

    @abc.abstractmethod
    def get_compute_target(self, workspace: str, name: str) -> ComputeTargetRecord: ...

    @abc.abstractmethod
    def list_compute_targets(self, workspace: str) -> list[ComputeTargetRecord]: ...

    @abc.abstractmethod
    def delete_compute_target(self, workspace: str, name: str) -> None: ...

    # ----------------------------------------------------------------- roles
    @abc.abstractmethod
    def assign_role(self, workspace: str, principal: str, role: Role) -> RoleAssignment:
        """Assign (or replace) the principal's role in the workspace."""

    @abc.abstractmethod
    def remove_role(self, workspace: str, principal: str) -> None:
        """ConflictError when it would leave the workspace without an Owner."""

    @abc.abstractmethod
    def get_role(self, workspace: str, principal: str) -> Role | None: ...

    @abc.abstractmethod
    def list_role_assignments(self, workspace: str) -> list[RoleAssignment]: ...

    # ----------------------------------------------------------------- secrets (ciphertext only)
    @abc.abstractmethod
    def put_secret(self, workspace: str, name: str, ciphertext: bytes) -> None: ...

    @abc.abstractmethod
    def get_secret(self, workspace: str, name: str) -> bytes: ...

    @abc.abstractmethod
    def list_secret_names(self, workspace: str) -> list[str]: ...

    @abc.abstractmethod
    def delete_secret(self, workspace: str, name: str) -> None: ...

    # ----------------------------------------------------------------- activities
    @abc.abstractmethod
    def create_activity(
        self, workspace: str, *, kind: str, target_id: str, message: str = "", activity_id: str | None = None
    ) -> ActivityRecord: ...

    @abc.abstractmethod
    def update_activity(
        self,
        activity_id: str,
        *,
        status: ActivityStatus | None = None,
        progress: float | None = None,
        message: str | None = None,
        error: str | None = None,
    ) -> ActivityRecord:
        """Progress only moves forward (a lower value is ignored); a terminal activity is final."""

    @abc.abstractmethod
    def get_activity(self, activity_id: str) -> ActivityRecord: ...

    @abc.abstractmethod
    def list_activities(
        self, workspace: str, *, target_id: str | None = None, kind: str | None = None
    ) -> list[ActivityRecord]: ...

    # ----------------------------------------------------------------- model registry
    @abc.abstractmethod
    def create_model_version(
        self,
        workspace: str,
        name: str,
        *,
        path: str,
        datastore: str,
        created_by: str,
        description: str = "",
        run_id: str | None = None,
        sha256: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> ModelRecord:
        """Register the next version of ``name`` (previous max + 1, atomic, never reused).
        DuplicateAttemptError when a version with the same ``idempotency_key`` exists."""

    @abc.abstractmethod
    def get_model_version(self, workspace: str, name: str, version: int | None = None) -> ModelRecord:
        """The given version, or the latest when ``version`` is None."""

    @abc.abstractmethod
    def search_models(
        self, workspace: str, *, name: str | None = None, tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None, latest_only: bool = False,
    ) -> list[ModelRecord]:
        """Model versions matching every given filter, newest version first.

        ``tags`` values of ``"*"`` match any value (tag key present)."""

    @abc.abstractmethod
    def set_model_tags(self, workspace: str, name: str, version: int, tags: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    def delete_model_version(self, workspace: str, name: str, version: int) -> None:
        """ConflictError, naming the images, while an image version packages the model version."""

    # ----------------------------------------------------------------- image registry
    @abc.abstractmethod
    def create_image_version(
        self,
        workspace: str,
        name: str,
        *,
        builder: str,
        created_by: str,
        model_ids: Sequence[str],
        spec: Mapping[str, Any],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_attempt: int | None = None,
    ) -> ImageRecord:
        """Register the next version of image ``name`` (previous max + 1, atomic, never reused),
        status Building. With an ``idempotency_key``, DuplicateAttemptError when that attempt (1
        by default) of the key has a version already.

        ``model_ids`` are exact ``"name:version"`` ids; an unknown one is a ModelNotFoundError and a
        malformed one a ValidationError. The links keep those versions from being deleted (see
        ``delete_model_version``) until the image version is deleted.
        """

    @abc.abstractmethod
    def update_image(
        self,
        workspace: str,
        name: str,
        version: int,
        *,
        status: ImageStatus | None = None,
        digest: str | None = None,
        location: str | None = None,
        error: str | None = None,
        build_log_path: str | None = None,
        build_log_tail: str | None = None,
        activity_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ImageRecord:
        """Set the given fields (None leaves a field as it is).

        Once Succeeded or Failed the status is final: another status is a ConflictError. Properties
        are added; giving an existing one another value is a ConflictError.
        """

    @abc.abstractmethod
    def get_image(self, workspace: str, name: str, version: int | None = None) -> ImageRecord:
        """The given version, or the latest when ``version`` is None."""

    @abc.abstractmethod
    def search_images(
        self, workspace: str, *, name: str | None = None, tags: Mapping[str, str] | None = None,
        model: str | None = None, status: ImageStatus | None = None, idempotency_key: str | None = None,
        latest_only: bool = False,
    ) -> list[ImageRecord]:
        """Image versions matching every given filter, newest first.

        ``tags`` values of ``"*"`` match any value (tag key present). ``model`` is ``"name:version"``
        (images packaging that version) or ``"name"`` (any version of the model). With
        ``latest_only``, the newest matching version of each image name.
        """

    @abc.abstractmethod
    def set_image_tags(self, workspace: str, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags."""

    @abc.abstractmethod
    def delete_image_version(self, workspace: str, name: str, version: int) -> None:
        """Delete the version, its tags and model links. Its number is never reused.

        ConflictError, naming the deployments, while a deployment serves or rolls out the version.
        """

    # ----------------------------------------------------------------- deployments (web services)
    @abc.abstractmethod
    def create_deployment(
        self,
        workspace: str,
        name: str,
        *,
        target: str,
        image_id: str,
        created_by: str,
        config: Mapping[str, Any],
        scoring_uri: str | None = None,
        primary_key_hash: str | None = None,
        secondary_key_hash: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        runtime: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> DeploymentRecord:
        """A new deployment, state Transitioning, generation 1; AlreadyExistsError if the name is
        taken, ImageNotFoundError for an unknown ``"name:version"`` image."""

    @abc.abstractmethod
    def update_deployment(
        self,
        workspace: str,
        name: str,
        *,
        state: DeploymentState | None = None,
        image_id: str | None = None,
        serving_image_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        runtime: Mapping[str, Any] | None = None,
        scoring_uri: str | None = None,
        primary_key_hash: str | None = None,
        secondary_key_hash: str | None = None,
        error: str | None = None,
        activity_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        next_generation: bool = False,
        if_generation: int | None = None,
    ) -> DeploymentRecord:
        """Set the given fields (None = unchanged, ``error=""`` clears it); ``next_generation``
        adds one to the generation; ``if_generation``: ConflictError unless the row is at it."""

    @abc.abstractmethod
    def get_deployment(self, workspace: str, name: str) -> DeploymentRecord: ...

    @abc.abstractmethod
    def search_deployments(
        self, workspace: str, *, target: str | None = None, state: DeploymentState | None = None,
        image: str | None = None, tags: Mapping[str, str] | None = None, idempotency_key: str | None = None,
    ) -> list[DeploymentRecord]:
        """Deployments matching every filter, by name. ``image``: ``"name:version"`` or ``"name"``
        (desired or serving); ``tags`` values of ``"*"`` match any value."""

    @abc.abstractmethod
    def delete_deployment(self, workspace: str, name: str) -> None:
        """Remove the record (DeploymentNotFoundError if there is none)."""

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:  # noqa: B027 - optional hook; stores without resources need nothing
        """Release connections."""
