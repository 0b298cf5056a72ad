"""Deployments (web services), with foreign keys to the image versions they serve.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Plain types on purpose: a migration must not change when the model code does later.
TIMESTAMP = sa.DateTime(timezone=True)  # UTCDateTime
JSON_TEXT = sa.Text()  # JsonText


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("image_ref", AUTO_ID, nullable=False),
        sa.Column("image_id", sa.Text(), nullable=False),
        sa.Column("serving_image_ref", AUTO_ID, nullable=True),
        sa.Column("serving_image_id", sa.Text(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("config", JSON_TEXT, nullable=False),
        sa.Column("runtime", JSON_TEXT, nullable=False),
        sa.Column("tags", JSON_TEXT, nullable=False),
        sa.Column("properties", JSON_TEXT, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("scoring_uri", sa.Text(), nullable=True),
        sa.Column("primary_key_hash", sa.String(64), nullable=True),
        sa.Column("secondary_key_hash", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("activity_id", NAME, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("idempotency_key", NAME, nullable=True),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_deployments_workspace_workspaces"),
        sa.ForeignKeyConstraint(["image_ref"], ["images.id"], name="fk_deployments_image_ref_images"),
        sa.ForeignKeyConstraint(["serving_image_ref"], ["images.id"], name="fk_deployments_serving_image_ref_images"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("workspace", "name", name="uq_deployments_workspace_name"),
    )
    op.create_index("ix_deployments_image_ref", "deployments", ["image_ref"])
    op.create_index("ix_deployments_serving_image_ref", "deployments", ["serving_image_ref"])
    op.create_index("ix_deployments_idempotency_key", "deployments", ["idempotency_key"])


def downgrade() -> None:
    op.drop_table("deployments")
