"""Initial metadata schema.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Plain types on purpose: a migration must not change when the model code does later.
TIMESTAMP = sa.DateTime(timezone=True)  # UTCDateTime
JSON_TEXT = sa.Text()  # JsonText


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("name", NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("default_datastore", NAME, nullable=False),
        sa.Column("properties", JSON_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workspaces"),
    )
    op.create_table(
        "experiments",
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_experiments_workspace_workspaces"),
        sa.PrimaryKeyConstraint("workspace", "name", name="pk_experiments"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("experiment", NAME, nullable=False),
        sa.Column("parent_run_id", NAME, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=True),
        sa.Column("end_time", TIMESTAMP, nullable=True),
        sa.Column("submitted_by", NAME, nullable=False),
        sa.Column("compute_target", NAME, nullable=True),
        sa.Column("run_config", JSON_TEXT, nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("snapshot_sha256", sa.String(64), nullable=True),
        sa.Column("idempotency_key", NAME, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_log_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace", "experiment"],
            ["experiments.workspace", "experiments.name"],
            name="fk_runs_workspace_experiment_experiments",
        ),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.run_id"], name="fk_runs_parent_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_index("ix_runs_workspace_experiment", "runs", ["workspace", "experiment"])
    op.create_index("ix_runs_workspace_created_at", "runs", ["workspace", "created_at"])
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_index("ix_runs_idempotency_key", "runs", ["idempotency_key"])
    op.create_table(
        "run_attributes",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_attributes_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "kind", "key", name="pk_run_attributes"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", JSON_TEXT, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_metrics_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_id_name_step", "metrics", ["run_id", "name", "step"])
    op.create_table(
        "run_log_chunks",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_log_chunks_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_log_chunks"),
    )
    for table in ("datastores", "compute_targets"):
        op.create_table(
            table,
            sa.Column("workspace", NAME, nullable=False),
            sa.Column("name", NAME, nullable=False),
            sa.Column("kind", sa.String(64), nullable=False),
            sa.Column("config", JSON_TEXT, nullable=False),
            sa.Column("created_at", TIMESTAMP, nullable=False),
            sa.Column("updated_at", TIMESTAMP, nullable=False),
            sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name=f"fk_{table}_workspace_workspaces"),
            sa.PrimaryKeyConstraint("workspace", "name", name=f"pk_{table}"),
        )
    op.create_table(
        "role_assignments",
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("principal", NAME, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_role_assignments_workspace_workspaces"),
        sa.PrimaryKeyConstraint("workspace", "principal", name="pk_role_assignments"),
    )
    op.create_table(
        "secrets",
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_secrets_workspace_workspaces"),
        sa.PrimaryKeyConstraint("workspace", "name", name="pk_secrets"),
    )
    op.create_table(
        "activities",
        sa.Column("activity_id", NAME, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("target_id", NAME, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_activities_workspace_workspaces"),
        sa.PrimaryKeyConstraint("activity_id", name="pk_activities"),
    )
    op.create_index("ix_activities_workspace_target_id", "activities", ["workspace", "target_id"])
    op.create_table(
        "model_names",
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_model_names_workspace_workspaces"),
        sa.PrimaryKeyConstraint("workspace", "name", name="pk_model_names"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("datastore", NAME, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("idempotency_key", NAME, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace", "name"],
            ["model_names.workspace", "model_names.name"],
            name="fk_model_versions_workspace_name_model_names",
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_model_versions_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("workspace", "name", "version", name="uq_model_versions_workspace_name_version"),
    )
    op.create_index("ix_model_versions_idempotency_key", "model_versions", ["idempotency_key"])
    op.create_table(
        "model_attributes",
        sa.Column("model_id", AUTO_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["model_versions.id"],
            name="fk_model_attributes_model_id_model_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "kind", "key", name="pk_model_attributes"),
    )


def downgrade() -> None:
    for table in (
        "model_attributes",
        "model_versions",
        "model_names",
        "activities",
        "secrets",
        "role_assignments",
        "compute_targets",
        "datastores",
        "run_log_chunks",
        "metrics",
        "run_attributes",
        "runs",
        "experiments",
        "workspaces",
    ):
        op.drop_table(table)
