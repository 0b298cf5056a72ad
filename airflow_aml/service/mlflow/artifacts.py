"""MLflow's artifacts proxy (``mlflow-artifacts``): upload, download, list and delete a run's
artifacts, which are the run's files under ``runs/<run id>/outputs/`` in the run's datastore
(the same files ``Run.get_file_names`` / ``download_file`` of our SDK see); download and list a
registered model version's files (``models/<name>/<id>/``). Any other path is refused; the
datastore is opened for the caller (read-only for a Reader) and a run token reaches only its own
run's files, as on the datastore object routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from airflow_aml.context import DATASTORE_PROPERTY, OUTPUTS_DIR, run_prefix
from airflow_aml.datastores import AbstractDatastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.service.access import Access
from airflow_aml.service.file_routes import object_chunks, receive_object
from airflow_aml.service.mlflow.calls import MLFLOW_PREFIX
from airflow_aml.service.mlflow.errors import RESOURCE_DOES_NOT_EXIST, MlflowError, MlflowRoute
from airflow_aml.service.requests import get_access

ARTIFACTS = f"{MLFLOW_PREFIX}/api/2.0/mlflow-artifacts/artifacts"
MODELS_DIR = "models"  # the registry's copies (airflow_aml.models): models/<name>/<id>/

AccessDep = Annotated[Access, Depends(get_access)]


def _locate(access: Access, workspace: str, path: str, *, write: bool = False) -> tuple[AbstractDatastore, str]:
    """The datastore holding artifact ``path`` and the path in it (checked)."""
    normalized = normalize_path(path)
    parts = normalized.split("/")
    if parts[0] == MODELS_DIR and not write:
        return _registered_files(access, workspace, normalized), normalized
    if len(parts) < 3 or f"{parts[0]}/{parts[1]}" != run_prefix(parts[1]) or parts[2] != OUTPUTS_DIR:
        raise MlflowError(f"Invalid artifact path {path!r}: artifacts live under runs/<run id>/outputs/")
    access.require_run_path(normalized)
    context = access.context(workspace)
    access.check_store_call("get_run", {"run_id": parts[1]})
    run = context.store.get_run(parts[1])  # the caller may read it, and it is of this workspace
    name = run.properties.get(DATASTORE_PROPERTY)
    return (context.get_datastore(name) if name else context.get_default_datastore()), normalized


def _registered_files(access: Access, workspace: str, path: str) -> AbstractDatastore:
    """A registered model version's files (``models/<name>/<id>/...``, what get-download-uri of
    the registry hands out): read-only, for whoever may read the registry."""
    parts = path.split("/")
    access.check_store_call("search_models", {})  # not for run tokens, as on the store routes
    if len(parts) >= 3:
        context = access.context(workspace)
        for record in context.store.search_models(workspace, name=parts[1]):
            if path == record.path or path.startswith(record.path + "/"):
                return context.get_datastore(record.datastore)
    raise MlflowError(f"No registered model version has the files {path!r}", RESOURCE_DOES_NOT_EXIST)


def _listing(store: AbstractDatastore, folder: str) -> dict[str, Any]:
    """The direct children of ``folder``, as MLflow's server lists them (names, not paths)."""
    children: dict[str, dict[str, Any]] = {}
    for info in store.list(folder + "/"):
        rest = info.path[len(folder) + 1:]
        name, _, below = rest.partition("/")
        if below:
            children.setdefault(name, {"path": name, "is_dir": True})
        else:
            children[name] = {"path": name, "is_dir": False, "file_size": info.size}
    return {"files": [children[name] for name in sorted(children)]} if children else {}


def artifacts_router() -> APIRouter:
    router = APIRouter(route_class=MlflowRoute)

    @router.get(ARTIFACTS, include_in_schema=False, name="mlflow_list_artifacts")
    def list_artifacts(access: AccessDep, workspace: str, path: str = "") -> JSONResponse:
        store, folder = _locate(access, workspace, path)
        return JSONResponse(_listing(store, folder))

    @router.get(ARTIFACTS + "/{path:path}", include_in_schema=False, name="mlflow_download_artifact")
    def download_artifact(access: AccessDep, workspace: str, path: str) -> StreamingResponse:
        store, located = _locate(access, workspace, path)
        info = store.info(located)  # not found: RESOURCE_DOES_NOT_EXIST before the stream starts
        return StreamingResponse(object_chunks(store, located), media_type="application/octet-stream",
                                 headers={"Content-Length": str(info.size)})

    @router.put(ARTIFACTS + "/{path:path}", include_in_schema=False, name="mlflow_upload_artifact")
    async def upload_artifact(request: Request, access: AccessDep, workspace: str, path: str) -> JSONResponse:
        store, located = await run_in_threadpool(lambda: _locate(access, workspace, path, write=True))
        await receive_object(request, store, located)
        return JSONResponse({})

    @router.delete(ARTIFACTS + "/{path:path}", include_in_schema=False, name="mlflow_delete_artifact")
    def delete_artifact(access: AccessDep, workspace: str, path: str) -> Response:
        store, located = _locate(access, workspace, path, write=True)
        store.delete(located)  # a file, or a folder and everything below it
        return JSONResponse({})

    return router
