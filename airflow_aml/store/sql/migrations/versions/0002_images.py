"""The image registry: images, their versions' counter, tags/properties and model links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Plain types on purpose: a migration must not change when the model code does later.
TIMESTAMP = sa.DateTime(timezone=True)  # UTCDateTime
JSON_TEXT = sa.Text()  # JsonText


def upgrade() -> None:
    # New tables only: nothing to rebuild, so no batch mode is needed on SQLite.
    op.create_table(
        "image_names",
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace"], ["workspaces.name"], name="fk_image_names_workspace_workspaces"),
        sa.PrimaryKeyConstraint("workspace", "name", name="pk_image_names"),
    )
    op.create_table(
        "images",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("builder", sa.String(64), nullable=False),
        sa.Column("spec", JSON_TEXT, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", NAME, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("build_log_path", sa.Text(), nullable=True),
        sa.Column("build_log_tail", sa.Text(), nullable=False),
        sa.Column("activity_id", NAME, nullable=True),
        sa.Column("idempotency_key", NAME, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace", "name"],
            ["image_names.workspace", "image_names.name"],
            name="fk_images_workspace_name_image_names",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("workspace", "name", "version", name="uq_images_workspace_name_version"),
    )
    op.create_index("ix_images_idempotency_key", "images", ["idempotency_key"])
    op.create_table(
        "image_attributes",
        sa.Column("image_id", AUTO_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name="fk_image_attributes_image_id_images", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", "kind", "key", name="pk_image_attributes"),
    )
    op.create_table(
        "image_models",
        sa.Column("image_id", AUTO_ID, nullable=False),
        sa.Column("model_id", AUTO_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name="fk_image_models_image_id_images", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["model_id"], ["model_versions.id"], name="fk_image_models_model_id_model_versions"),
        sa.PrimaryKeyConstraint("image_id", "model_id", name="pk_image_models"),
    )
    op.create_index("ix_image_models_model_id", "image_models", ["model_id"])
    op.create_index("ix_image_models_model_name_model_version", "image_models", ["model_name", "model_version"])


def downgrade() -> None:
    for table in ("image_models", "image_attributes", "images", "image_names"):
        op.drop_table(table)
