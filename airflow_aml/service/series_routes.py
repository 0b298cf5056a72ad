"""Scalar metric series of a run for charts, downsampled by the service (``max_points``).

The run page draws one chart per metric; a run that logged 100,000 steps would otherwise send
100,000 points per metric through the paginated ``/metrics`` listing. The read goes through the
store route's ``get_metrics`` call, so authorization (roles, run tokens) is the same as there.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from airflow_aml.entities import MetricKind
from airflow_aml.service.access import Access
from airflow_aml.service.downsample import lttb
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access
from airflow_aml.service.store_routes import ENDPOINTS_BY_METHOD, call_store
from airflow_aml.store.http.endpoints import to_wire

AccessDep = Annotated[Access, Depends(get_access)]


def series_of(metrics: list[Any], max_points: int | None) -> list[dict[str, Any]]:
    """``[{name, steps, values, total_points}]`` per scalar metric, in the store's (name, step) order."""
    grouped: dict[str, tuple[list[float], list[float]]] = {}
    for metric in metrics:
        if metric.kind is not MetricKind.SCALAR:
            continue
        steps, values = grouped.setdefault(metric.name, ([], []))
        steps.append(metric.step)
        values.append(math.nan if metric.value is None else metric.value)
    series = []
    for name, (steps, values) in grouped.items():
        kept = lttb(steps, values, max_points) if max_points else range(len(steps))
        series.append({"name": name, "steps": [steps[i] for i in kept], "values": [values[i] for i in kept],
                       "total_points": len(steps)})
    return series


def series_router() -> APIRouter:
    router = APIRouter(tags=["metrics"], responses=ERROR_RESPONSES)

    @router.get("/runs/{run_id}/metric-series", operation_id="get_metric_series")
    def metric_series(
        access: AccessDep, run_id: str, max_points: Annotated[int | None, Query(ge=3, le=100_000)] = None,
    ) -> Response:
        """Each scalar metric as ``steps``/``values`` arrays; with ``max_points`` at most that many
        points per metric (LTTB, first/last and extremes kept) and ``total_points`` the logged count."""
        metrics = call_store(ENDPOINTS_BY_METHOD["get_metrics"], access, {"run_id": run_id, "names": None})
        return Response(to_wire({"series": series_of(metrics, max_points)}), media_type="application/json")

    return router
