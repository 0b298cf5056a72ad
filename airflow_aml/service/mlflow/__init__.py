"""The MLflow-compatible tracking API of the workspace service: the real ``mlflow`` client logs
into a workspace with ``mlflow.set_tracking_uri("http://<service>/api/v1/workspaces/<ws>/mlflow")``
and ``MLFLOW_TRACKING_TOKEN=<token>`` (sent as ``Authorization: Bearer``). The routes authenticate
and authorize exactly like the service's own (``Access``, the workspace's ``GuardedStore``, the
run-token scope); only their request and answer shapes and their error body are MLflow's."""

from __future__ import annotations

from fastapi import APIRouter

from airflow_aml.service.mlflow import experiments, logged_models, registry, run_search, runs
from airflow_aml.service.mlflow.artifacts import artifacts_router
from airflow_aml.service.mlflow.calls import MLFLOW_PREFIX, mlflow_routes

__all__ = ["MLFLOW_PREFIX", "mlflow_router"]


def mlflow_router() -> APIRouter:
    router = APIRouter()
    mlflow_routes(router, [*experiments.ROUTES, *runs.ROUTES, *run_search.ROUTES, *logged_models.ROUTES,
                           *registry.ROUTES])
    router.include_router(artifacts_router())
    return router
