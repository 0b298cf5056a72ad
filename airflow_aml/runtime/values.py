"""How logged metrics are checked going in and folded coming out (the Azure ML SDK's shapes)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from airflow_aml.entities import Metric, MetricKind
from airflow_aml.exceptions import InvalidMetricError


def metric_value(name: str, value: object) -> float:
    """``value`` as a float; InvalidMetricError for anything that is not a real number (bools too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidMetricError(f"Metric {name!r}: value {value!r} ({type(value).__name__}) is not a number")
    return float(value)


def fold_metric(values: list[Metric]) -> Any:
    """One metric's values as ``get_metrics`` shows them: a number for a single value, a list for a
    series, ``{column: [values]}`` for a table, the image path(s) for images."""
    kind = values[0].kind
    if kind is MetricKind.ROW:
        table: dict[str, list[float]] = {}
        for metric in values:
            for column, value in (metric.payload or {}).items():
                table.setdefault(column, []).append(value)
        return table
    if kind is MetricKind.IMAGE:
        paths = [(m.payload or {}).get("path") for m in values]
        return paths[0] if len(paths) == 1 else paths
    numbers_ = [m.value if m.value is not None else math.nan for m in values]
    return numbers_[0] if len(numbers_) == 1 else numbers_
