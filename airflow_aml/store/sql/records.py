"""Rows -> the plain records of ``airflow_aml.entities`` (nothing ORM-bound leaves the store)."""

from __future__ import annotations

import math
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
    MetricKind,
    ModelRecord,
    Role,
    RoleAssignment,
    RunRecord,
    RunStatus,
    WorkspaceRecord,
)
from airflow_aml.store.sql.tables import (
    PARAM,
    PROPERTY,
    TAG,
    ActivityRow,
    ComputeTargetRow,
    DatastoreRow,
    DeploymentRow,
    ExperimentRow,
    ImageRow,
    ModelVersionRow,
    RoleAssignmentRow,
    RunLogChunkRow,
    RunRow,
    WorkspaceRow,
)

# {kind: {key: value}} for one run, model version or image version
Attributes = dict[str, dict[str, str]]


def empty_attributes() -> Attributes:
    return {TAG: {}, PROPERTY: {}, PARAM: {}}


def workspace_record(row: WorkspaceRow) -> WorkspaceRecord:
    return WorkspaceRecord(
        name=row.name,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        default_datastore=row.default_datastore,
        properties=dict(row.properties or {}),
    )


def experiment_record(row: ExperimentRow) -> ExperimentRecord:
    return ExperimentRecord(workspace=row.workspace, name=row.name, created_at=row.created_at)


def run_record(row: RunRow, attributes: Attributes) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        workspace=row.workspace,
        experiment=row.experiment,
        parent_run_id=row.parent_run_id,
        status=RunStatus(row.status),
        created_at=row.created_at,
        start_time=row.start_time,
        end_time=row.end_time,
        submitted_by=row.submitted_by,
        compute_target=row.compute_target,
        run_config=dict(row.run_config or {}),
        display_name=row.display_name,
        error=row.error,
        tags=dict(attributes[TAG]),
        properties=dict(attributes[PROPERTY]),
        params=dict(attributes[PARAM]),
        snapshot_sha256=row.snapshot_sha256,
        idempotency_key=row.idempotency_key,
        cancel_requested=bool(row.cancel_requested),
        heartbeat_at=row.heartbeat_at,
    )


def metric_record(
    name: str, value: float | None, step: int, timestamp: float, kind: str, payload: dict[str, Any] | None
) -> Metric:
    """From the columns of ``metrics.METRIC_COLUMNS`` (no ORM object: series are long)."""
    metric_kind = MetricKind(kind)
    if metric_kind is MetricKind.SCALAR and value is None:
        value = math.nan  # SQLite stored the NaN as NULL
    return Metric(name=name, value=value, step=step, timestamp=timestamp, kind=metric_kind, payload=payload)


def log_chunk_record(row: RunLogChunkRow) -> LogChunk:
    return LogChunk(seq=row.seq, stream=row.stream, text=row.text, timestamp=row.timestamp)


def datastore_record(row: DatastoreRow, default_datastore: str) -> DatastoreRecord:
    return DatastoreRecord(
        workspace=row.workspace,
        name=row.name,
        kind=row.kind,
        config=dict(row.config or {}),
        is_default=row.name == default_datastore,
        created_at=row.created_at,
    )


def compute_target_record(row: ComputeTargetRow) -> ComputeTargetRecord:
    return ComputeTargetRecord(
        workspace=row.workspace,
        name=row.name,
        kind=row.kind,
        config=dict(row.config or {}),
        created_at=row.created_at,
    )


def role_assignment_record(row: RoleAssignmentRow) -> RoleAssignment:
    return RoleAssignment(
        workspace=row.workspace, principal=row.principal, role=Role(row.role), created_at=row.created_at
    )


def activity_record(row: ActivityRow) -> ActivityRecord:
    return ActivityRecord(
        activity_id=row.activity_id,
        workspace=row.workspace,
        kind=row.kind,
        target_id=row.target_id,
        status=ActivityStatus(row.status),
        progress=row.progress,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
        error=row.error,
    )


def model_record(row: ModelVersionRow, attributes: Attributes) -> ModelRecord:
    return ModelRecord(
        workspace=row.workspace,
        name=row.name,
        version=row.version,
        path=row.path,
        datastore=row.datastore,
        created_at=row.created_at,
        created_by=row.created_by,
        description=row.description,
        run_id=row.run_id,
        sha256=row.sha256,
        tags=dict(attributes[TAG]),
        properties=dict(attributes[PROPERTY]),
        idempotency_key=row.idempotency_key,
    )


def image_record(row: ImageRow, attributes: Attributes, model_ids: list[str]) -> ImageRecord:
    return ImageRecord(
        workspace=row.workspace,
        name=row.name,
        version=row.version,
        status=ImageStatus(row.status),
        builder=row.builder,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        model_ids=list(model_ids),
        spec=dict(row.spec or {}),
        description=row.description,
        digest=row.digest,
        location=row.location,
        error=row.error,
        build_log_path=row.build_log_path,
        build_log_tail=row.build_log_tail,
        activity_id=row.activity_id,
        tags=dict(attributes[TAG]),
        properties=dict(attributes[PROPERTY]),
        idempotency_key=row.idempotency_key,
    )


def deployment_record(row: DeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        workspace=row.workspace,
        name=row.name,
        target=row.target,
        state=DeploymentState(row.state),
        image_id=row.image_id,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        generation=row.generation,
        config=dict(row.config or {}),
        serving_image_id=row.serving_image_id,
        scoring_uri=row.scoring_uri,
        primary_key_hash=row.primary_key_hash,
        secondary_key_hash=row.secondary_key_hash,
        error=row.error,
        activity_id=row.activity_id,
        runtime=dict(row.runtime or {}),
        description=row.description,
        tags=dict(row.tags or {}),
        properties=dict(row.properties or {}),
        idempotency_key=row.idempotency_key,
    )
