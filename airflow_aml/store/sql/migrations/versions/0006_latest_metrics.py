"""The latest value of each scalar metric of each run, for searches that filter and order by it.

Filled from the metrics already logged: per (run, name), the scalar row at the highest step, ties
broken by the latest timestamp, then by insertion order (what searches computed until now).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("experiment", NAME, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_latest_metrics_run_id_runs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_latest_metrics"),
    )
    op.create_index("ix_latest_metrics_rank", "latest_metrics", ["workspace", "experiment", "name", "value"])
    op.execute(
        """
        INSERT INTO latest_metrics (run_id, name, workspace, experiment, step, value, timestamp)
        SELECT ranked.run_id, ranked.name, runs.workspace, runs.experiment, ranked.step, ranked.value,
               ranked.timestamp
        FROM (
            SELECT run_id, name, step, value, timestamp,
                   ROW_NUMBER() OVER (PARTITION BY run_id, name ORDER BY step DESC, timestamp DESC, id DESC) AS rank
            FROM metrics WHERE kind = 'scalar'
        ) AS ranked
        JOIN runs ON runs.run_id = ranked.run_id
        WHERE ranked.rank = 1
        """
    )


def downgrade() -> None:
    op.drop_index("ix_latest_metrics_rank", table_name="latest_metrics")
    op.drop_table("latest_metrics")
