"""SQL for "the latest value of a scalar metric": the value at the highest step, ties broken by
the latest timestamp, then by insertion order. ``latest_metrics`` holds it per (run, name), kept by
``log_batch`` (``metrics.py``); these read it there, never by loading metric rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select

from airflow_aml.store.sql.tables import LatestMetricRow, RunRow


def _comparable(value: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    # PostgreSQL sorts NaN above every number and finds NaN = NaN; SQLite stores NaN as NULL.
    # Mapping NaN to NULL on PostgreSQL makes filtering and ordering agree on both backends.
    if dialect == "postgresql":
        return func.nullif(value, literal(math.nan))
    return value


def latest_scalar_value(dialect: str, metric: str) -> ColumnElement[Any]:
    """Correlated scalar subquery: the latest value of ``metric`` for the enclosing ``RunRow``
    (NULL when the run has none, or its latest value is NaN): one primary-key lookup in
    ``latest_metrics`` per run."""
    latest = (
        select(LatestMetricRow.value)
        .where(LatestMetricRow.run_id == RunRow.run_id, LatestMetricRow.name == metric)
        .correlate(RunRow)
        .scalar_subquery()
    )
    return _comparable(latest, dialect)


def comparable_value(dialect: str, value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A latest-value column (e.g. of an aliased ``latest_metrics``) as filters compare it."""
    return _comparable(value, dialect)


def latest_scalar_values(run_ids: Sequence[str]) -> Select[tuple[str, str, float | None]]:
    """(run_id, name, value) of the latest value of every scalar metric of ``run_ids``."""
    return select(LatestMetricRow.run_id, LatestMetricRow.name, LatestMetricRow.value).where(
        LatestMetricRow.run_id.in_(list(run_ids))
    )
