"""What an Airflow DAG run or task instance created in a workspace, for the views on Airflow's
dag_run and task_instance pages: the runs, model versions, images and deployments the provider's
operators marked with the task instance that made them (``operators.base.task_properties``).

Runs carry the marks as properties (immutable: the run's submitter), the registry objects as
tags (what their searches filter by). One request answers all four, so the page makes one call
per workspace.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from airflow_aml.entities import RunQuery
from airflow_aml.service.access import Access, refuse_run_token
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access
from airflow_aml.store.http.endpoints import to_wire

# A task instance makes a handful of objects; a DAG run with a wide mapped task may make more.
MAX_RUNS = 500

AccessDep = Annotated[Access, Depends(get_access)]


def airflow_marks(dag_id: str, run_id: str | None, task_id: str | None, map_index: int | None) -> dict[str, str]:
    """The ``airflow.*`` marks to match: the same keys and values ``task_properties`` writes."""
    marks = {"airflow.dag_id": dag_id}
    if run_id is not None:
        marks["airflow.run_id"] = run_id
    if task_id is not None:
        marks["airflow.task_id"] = task_id
    if map_index is not None:
        marks["airflow.map_index"] = str(map_index)
    return marks


def airflow_object_router() -> APIRouter:
    router = APIRouter(tags=["airflow"], responses=ERROR_RESPONSES)

    @router.get("/workspaces/{workspace}/airflow-objects", operation_id="list_airflow_objects")
    def list_airflow_objects(
        access: AccessDep, workspace: str, dag_id: Annotated[str, Query(min_length=1)],
        run_id: str | None = None, task_id: str | None = None, map_index: int | None = None,
    ) -> Response:
        """The runs, model versions, images and deployments made by the tasks of a DAG run (or
        one task instance of it), newest first (Reader)."""
        refuse_run_token(access, "list what an Airflow task created")
        ctx = access.context(workspace)
        marks = airflow_marks(dag_id, run_id, task_id, map_index)
        # ctx.store checks the caller's read role on every call.
        found = {
            "runs": ctx.store.search_runs(ctx.name, RunQuery(properties=marks, max_results=MAX_RUNS)),
            "models": ctx.store.search_models(ctx.name, tags=marks),
            "images": ctx.store.search_images(ctx.name, tags=marks),
            "deployments": ctx.store.search_deployments(ctx.name, tags=marks),
        }
        return Response(to_wire(found), media_type="application/json")

    return router
