"""SQL for "the latest value of a scalar metric": the value at the highest step, ties broken by
the latest timestamp, then by insertion order. Computed in the database, never by loading rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select
from sqlalchemy.orm import aliased

from airflow_aml.entities import MetricKind
from airflow_aml.store.sql.tables import MetricRow, RunRow

_LATEST_FIRST = (MetricRow.step.desc(), MetricRow.timestamp.desc(), MetricRow.id.desc())


def _comparable(value: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    # PostgreSQL sorts NaN above every number and finds NaN = NaN; SQLite stores NaN as NULL.
    # Mapping NaN to NULL on PostgreSQL makes filtering and ordering agree on both backends.
    if dialect == "postgresql":
        return func.nullif(value, literal(math.nan))
    return value


def latest_scalar_value(dialect: str, metric: str) -> ColumnElement[Any]:
    """Correlated scalar subquery: the latest value of ``metric`` for the enclosing ``RunRow``
    (NULL when the run has none, or its latest value is NaN). One index probe per run
    thanks to ix_metrics_run_id_name_step."""
    m = aliased(MetricRow)
    latest = (
        select(m.value)
        .where(m.run_id == RunRow.run_id, m.name == metric, m.kind == MetricKind.SCALAR.value)
        .order_by(m.step.desc(), m.timestamp.desc(), m.id.desc())
        .limit(1)
        .correlate(RunRow)
        .scalar_subquery()
    )
    return _comparable(latest, dialect)


def latest_scalar_values(run_ids: Sequence[str]) -> Select[tuple[str, str, float | None]]:
    """(run_id, name, value) of the latest value of every scalar metric of ``run_ids``."""
    ranked = (
        select(
            MetricRow.run_id,
            MetricRow.name,
            MetricRow.value,
            func.row_number()
            .over(partition_by=(MetricRow.run_id, MetricRow.name), order_by=_LATEST_FIRST)
            .label("rank"),
        )
        .where(MetricRow.run_id.in_(list(run_ids)), MetricRow.kind == MetricKind.SCALAR.value)
        .subquery()
    )
    return select(ranked.c.run_id, ranked.c.name, ranked.c.value).where(ranked.c.rank == 1)
