"""The metadata schema. Every change here needs a new revision in ``migrations/versions``.

Rows never leave the store: ``records.py`` turns them into the dataclasses of
``airflow_aml.entities``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from airflow_aml.store.sql.types import JsonText, UTCDateTime

# Deterministic constraint names: SQLite batch migrations can only drop named constraints.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME = String(255)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits for busy tables.
AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")

# run_attributes.kind / model_attributes.kind
TAG = "tag"
PROPERTY = "property"
PARAM = "param"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class WorkspaceRow(Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    default_datastore: Mapped[str] = mapped_column(NAME)
    properties: Mapped[dict[str, str]] = mapped_column(JsonText())


class ExperimentRow(Base):
    __tablename__ = "experiments"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        ForeignKeyConstraint(["workspace", "experiment"], ["experiments.workspace", "experiments.name"]),
        Index("ix_runs_workspace_experiment", "workspace", "experiment"),
        Index("ix_runs_workspace_created_at", "workspace", "created_at"),
        Index("ix_runs_parent_run_id", "parent_run_id"),
        Index("ix_runs_idempotency_key", "idempotency_key"),
        # One row per attempt of a key (migration 0004): racing copies of a task insert one.
        Index("ux_runs_idempotency_attempt", "workspace", "idempotency_key", "idempotency_attempt",
              unique=True),
    )

    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    workspace: Mapped[str] = mapped_column(NAME)
    experiment: Mapped[str] = mapped_column(NAME)
    parent_run_id: Mapped[str | None] = mapped_column(NAME, ForeignKey("runs.run_id"))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_by: Mapped[str] = mapped_column(NAME)
    compute_target: Mapped[str | None] = mapped_column(NAME)
    run_config: Mapped[dict[str, Any]] = mapped_column(JsonText())
    display_name: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(NAME)
    idempotency_attempt: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column()
    # When the supervisor carrying the run last beat (migration 0004); None: no supervisor beats.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Last log chunk seq handed out; bumped under the row lock so seqs commit in order.
    last_log_seq: Mapped[int] = mapped_column(Integer)


class RunAttributeRow(Base):
    """Tags (mutable), properties and params (immutable) of a run."""

    __tablename__ = "run_attributes"

    run_id: Mapped[str] = mapped_column(NAME, ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(NAME, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_id_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(NAME, ForeignKey("runs.run_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(NAME)
    step: Mapped[int] = mapped_column(BigInteger)
    # NULL on SQLite for NaN (SQLite cannot store NaN); read back as NaN for scalar metrics.
    value: Mapped[float | None] = mapped_column(Double)
    timestamp: Mapped[float] = mapped_column(Double)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonText())


class LatestMetricRow(Base):
    """The latest value of each scalar metric of each run (migration 0006), kept by ``log_batch``
    in the same transaction as the metric rows: searches filter on it with one key lookup per run
    and order by it through ``ix_latest_metrics_rank``, so a top-N by a metric reads N index
    entries instead of every run of the experiment. ``workspace``/``experiment`` are the run's
    (never changed), copied here for that index."""

    __tablename__ = "latest_metrics"
    __table_args__ = (Index("ix_latest_metrics_rank", "workspace", "experiment", "name", "value"),)

    run_id: Mapped[str] = mapped_column(NAME, ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    workspace: Mapped[str] = mapped_column(NAME)
    experiment: Mapped[str] = mapped_column(NAME)
    step: Mapped[int] = mapped_column(BigInteger)
    # NULL for NaN (on SQLite, as in metrics; PostgreSQL stores NaN, and queries map it to NULL).
    value: Mapped[float | None] = mapped_column(Double)
    timestamp: Mapped[float] = mapped_column(Double)


class RunLogChunkRow(Base):
    __tablename__ = "run_log_chunks"

    run_id: Mapped[str] = mapped_column(NAME, ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[float] = mapped_column(Double)


class DatastoreRow(Base):
    __tablename__ = "datastores"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JsonText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ComputeTargetRow(Base):
    __tablename__ = "compute_targets"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JsonText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RoleAssignmentRow(Base):
    __tablename__ = "role_assignments"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    principal: Mapped[str] = mapped_column(NAME, primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SecretRow(Base):
    __tablename__ = "secrets"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivityRow(Base):
    __tablename__ = "activities"
    __table_args__ = (Index("ix_activities_workspace_target_id", "workspace", "target_id"),)

    activity_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"))
    kind: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(NAME)
    status: Mapped[str] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class ModelNameRow(Base):
    """Per-name version counter: versions are never reused, even after a delete."""

    __tablename__ = "model_names"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        ForeignKeyConstraint(["workspace", "name"], ["model_names.workspace", "model_names.name"]),
        UniqueConstraint("workspace", "name", "version"),
        Index("ix_model_versions_idempotency_key", "idempotency_key"),
        # One row per attempt of a key (migration 0004): racing copies of a task insert one.
        Index("ux_model_versions_idempotency_attempt", "workspace", "idempotency_key", "idempotency_attempt",
              unique=True),
    )

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    datastore: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(NAME)
    description: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(NAME, ForeignKey("runs.run_id"))
    sha256: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(NAME)
    idempotency_attempt: Mapped[int | None] = mapped_column(Integer)


class ModelAttributeRow(Base):
    """Tags (mutable) and properties (set at registration) of a model version."""

    __tablename__ = "model_attributes"

    model_id: Mapped[int] = mapped_column(
        AUTO_ID, ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(NAME, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImageNameRow(Base):
    """Per-name version counter of images: versions are never reused, even after a delete."""

    __tablename__ = "image_names"

    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)


class ImageRow(Base):
    __tablename__ = "images"
    __table_args__ = (
        ForeignKeyConstraint(["workspace", "name"], ["image_names.workspace", "image_names.name"]),
        UniqueConstraint("workspace", "name", "version"),
        Index("ix_images_idempotency_key", "idempotency_key"),
        # One row per attempt of a key (migration 0004): racing copies of a task insert one.
        Index("ux_images_idempotency_attempt", "workspace", "idempotency_key", "idempotency_attempt",
              unique=True),
    )

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    builder: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonText())
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(NAME)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    digest: Mapped[str | None] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # The full log lives in the datastore; the row keeps where, and the last lines.
    build_log_path: Mapped[str | None] = mapped_column(Text)
    build_log_tail: Mapped[str] = mapped_column(Text)
    activity_id: Mapped[str | None] = mapped_column(NAME)
    idempotency_key: Mapped[str | None] = mapped_column(NAME)
    idempotency_attempt: Mapped[int | None] = mapped_column(Integer)


class ImageAttributeRow(Base):
    """Tags (mutable) and properties (add-only) of an image version."""

    __tablename__ = "image_attributes"

    image_id: Mapped[int] = mapped_column(AUTO_ID, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(NAME, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImageModelRow(Base):
    """The model versions an image packages.

    ``model_id`` is a real foreign key without cascade: the database itself refuses to delete a
    model version an image still uses (the store checks first, to raise a ConflictError naming the
    images). Name and version are copied for searching by ``"name:version"`` without a join.
    """

    __tablename__ = "image_models"
    __table_args__ = (
        Index("ix_image_models_model_id", "model_id"),
        Index("ix_image_models_model_name_model_version", "model_name", "model_version"),
    )

    image_id: Mapped[int] = mapped_column(AUTO_ID, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(AUTO_ID, ForeignKey("model_versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # order of the spec's model list
    model_name: Mapped[str] = mapped_column(NAME)
    model_version: Mapped[int] = mapped_column(Integer)


class DeploymentRow(Base):
    """A web service. Named, not versioned: an update changes the row (``generation`` + 1).

    ``image_ref`` and ``serving_image_ref`` are real foreign keys to ``images.id`` without
    cascade: the database refuses to delete an image version a deployment serves or is rolling
    out (the store checks first, to raise a ConflictError naming the deployment).
    """

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("workspace", "name"),
        Index("ix_deployments_image_ref", "image_ref"),
        Index("ix_deployments_serving_image_ref", "serving_image_ref"),
        Index("ix_deployments_idempotency_key", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(NAME, ForeignKey("workspaces.name"))
    name: Mapped[str] = mapped_column(NAME)
    target: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    image_ref: Mapped[int] = mapped_column(AUTO_ID, ForeignKey("images.id"))
    image_id: Mapped[str] = mapped_column(Text)  # "name:version", copied for display and search
    serving_image_ref: Mapped[int | None] = mapped_column(AUTO_ID, ForeignKey("images.id"))
    serving_image_id: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonText())
    runtime: Mapped[dict[str, Any]] = mapped_column(JsonText())
    tags: Mapped[dict[str, str]] = mapped_column(JsonText())
    properties: Mapped[dict[str, str]] = mapped_column(JsonText())
    description: Mapped[str] = mapped_column(Text)
    scoring_uri: Mapped[str | None] = mapped_column(Text)
    primary_key_hash: Mapped[str | None] = mapped_column(String(64))
    secondary_key_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    activity_id: Mapped[str | None] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(NAME)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str | None] = mapped_column(NAME)


class AccessTokenRow(Base):
    """A personal access token or a run token of the workspace service (migration 0005).

    Only the SHA-256 of the token is kept: a database dump reveals no credential.
    """

    __tablename__ = "access_tokens"
    __table_args__ = (
        Index("ix_access_tokens_principal", "principal"),
        Index("ix_access_tokens_run_id", "run_id"),
    )

    token_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "personal" or "run"
    principal: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Run tokens: the run (and its workspace) they act on, and the secrets they may read.
    run_id: Mapped[str | None] = mapped_column(NAME)
    workspace: Mapped[str | None] = mapped_column(NAME)
    secrets: Mapped[list[str]] = mapped_column(JsonText())
