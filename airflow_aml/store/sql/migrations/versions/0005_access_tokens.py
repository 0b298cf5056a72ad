"""Access tokens of the workspace service: personal access tokens and run tokens.

Only a token's SHA-256 is stored. A run token names its run (and that run's workspace) and the
secrets it may read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
# Plain types on purpose: a migration must not change when the model code does later.
TIMESTAMP = sa.DateTime(timezone=True)  # UTCDateTime
JSON_TEXT = sa.Text()  # JsonText


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        sa.Column("token_id", NAME, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("principal", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("workspace", NAME, nullable=True),
        sa.Column("secrets", JSON_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("token_id", name="pk_access_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_access_tokens_token_hash"),
    )
    op.create_index("ix_access_tokens_principal", "access_tokens", ["principal"])
    op.create_index("ix_access_tokens_run_id", "access_tokens", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_access_tokens_run_id", table_name="access_tokens")
    op.drop_index("ix_access_tokens_principal", table_name="access_tokens")
    op.drop_table("access_tokens")
