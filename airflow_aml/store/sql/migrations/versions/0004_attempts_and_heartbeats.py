"""One row per attempt of an idempotency key, and the heartbeat of a run's supervisor.

Two copies of one Airflow task instance racing create one run, one model version and one image,
not two.

A run or an image may be retried under the same key after a failed attempt (attempt 2, 3 ...);
a model version has one attempt. The unique index makes the database refuse a second row for the
same (workspace, key, attempt); rows without a key (NULL) never collide. Rows written before this
revision keep a NULL attempt and are found by their key as before.

``runs.heartbeat_at``: when the supervisor carrying a run last said it was alive; a run whose
heartbeat is older than the limit has lost its compute (a killed supervisor, a reboot). Runs
started before this revision have none and are judged as before (by their process).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("runs", "model_versions", "images")


def upgrade() -> None:
    # ADD COLUMN and CREATE UNIQUE INDEX need no table rebuild on SQLite: no batch mode.
    for table in TABLES:
        op.add_column(table, sa.Column("idempotency_attempt", sa.Integer(), nullable=True))
        op.create_index(
            f"ux_{table}_idempotency_attempt", table, ["workspace", "idempotency_key", "idempotency_attempt"],
            unique=True,
        )
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "heartbeat_at")
    for table in TABLES:
        op.drop_index(f"ux_{table}_idempotency_attempt", table_name=table)
        op.drop_column(table, "idempotency_attempt")
