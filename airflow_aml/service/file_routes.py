"""Datastore objects through the service, for clients that cannot reach the datastore itself
(a laptop, a container, a cluster node): list, info, download and upload as streams, delete.

The datastore is the workspace's own, opened for the caller (read-only for a Reader); its path
rules apply (a path leaving the root is a 400). An upload is spooled to the service's disk and
written to the datastore only once the whole body arrived, so a cut upload leaves nothing under
its name, and the datastore's own integrity record (SHA-256) is written as for any upload.
A run token reaches only files under ``runs/<id>/`` of its run and that run's children.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from airflow_aml.datastores import AbstractDatastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import IntegrityError, ValidationError
from airflow_aml.hashing import CHUNK_SIZE
from airflow_aml.service.access import Access
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access, service_state
from airflow_aml.service.store_routes import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_cursor, encode_cursor

SHA256_HEADER = "X-AML-SHA256"
_OBJECTS = "/workspaces/{workspace}/datastores/{datastore}/objects"
_SPOOL_IN_MEMORY = 8 * 1024 * 1024

AccessDep = Annotated[Access, Depends(get_access)]


class ObjectInfoModel(BaseModel):
    path: str
    size: int
    sha256: str
    modified: float


class ObjectPage(BaseModel):
    items: list[ObjectInfoModel]
    next_cursor: str | None = None


def _datastore(access: Access, workspace: str, datastore: str) -> AbstractDatastore:
    return access.context(workspace).get_datastore(datastore)


def _checked(access: Access, path: str) -> str:
    normalized = normalize_path(path)
    access.require_run_path(normalized)
    return normalized


def _info(info: Any) -> ObjectInfoModel:
    return ObjectInfoModel(path=info.path, size=info.size, sha256=info.sha256, modified=info.modified)


def file_router() -> APIRouter:
    router = APIRouter(tags=["datastores"], responses=ERROR_RESPONSES)

    @router.get(_OBJECTS, operation_id="list_objects", response_model=ObjectPage)
    def list_objects(
        access: AccessDep, workspace: str, datastore: str, prefix: Annotated[str, Query()] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[str | None, Query()] = None,
    ) -> ObjectPage:
        """Objects under ``prefix`` (a folder), in path order."""
        if prefix:
            prefix = _checked(access, prefix)
        else:
            access.require_run_path("")  # a run token lists its runs' folders only
        offset = decode_cursor(cursor)
        items: list[ObjectInfoModel] = []
        more = False
        for index, info in enumerate(_datastore(access, workspace, datastore).list(prefix)):
            if index < offset:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(_info(info))
        return ObjectPage(items=items, next_cursor=encode_cursor(offset + limit) if more else None)

    @router.get("/workspaces/{workspace}/datastores/{datastore}/info/{path:path}", operation_id="get_object_info",
                response_model=ObjectInfoModel)
    def object_info(access: AccessDep, workspace: str, datastore: str, path: str) -> ObjectInfoModel:
        return _info(_datastore(access, workspace, datastore).info(_checked(access, path)))

    @router.get(_OBJECTS + "/{path:path}", operation_id="download_object",
                responses={200: {"content": {"application/octet-stream": {}}, "description": "The object's bytes"}})
    def download(access: AccessDep, workspace: str, datastore: str, path: str) -> StreamingResponse:
        """The object's bytes; ``X-AML-SHA256`` is the SHA-256 recorded when it was written."""
        store = _datastore(access, workspace, datastore)
        path = _checked(access, path)
        info = store.info(path)  # not found -> 404 before the stream starts
        return StreamingResponse(
            object_chunks(store, path), media_type="application/octet-stream",
            headers={"Content-Length": str(info.size), SHA256_HEADER: info.sha256},
        )

    @router.put(_OBJECTS + "/{path:path}", operation_id="upload_object", response_model=ObjectInfoModel,
                openapi_extra={"requestBody": {"required": True, "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def upload(request: Request, access: AccessDep, workspace: str, datastore: str, path: str) -> ObjectInfoModel:
        """Write the request body as the object (replacing it). The optional ``X-AML-SHA256``
        header is checked against the bytes received: a mismatch writes nothing (409)."""
        store = await run_in_threadpool(_datastore, access, workspace, datastore)
        path = await run_in_threadpool(_checked, access, path)
        return _info(await receive_object(request, store, path))

    @router.delete(_OBJECTS + "/{path:path}", operation_id="delete_object", status_code=204)
    def delete(access: AccessDep, workspace: str, datastore: str, path: str) -> Response:
        _datastore(access, workspace, datastore).delete(_checked(access, path))
        return Response(status_code=204)

    return router


async def receive_object(request: Request, store: AbstractDatastore, path: str) -> Any:
    """Write the request body to ``path`` of ``store`` once all of it arrived (spooled, within the
    service's upload limit, checked against an ``X-AML-SHA256`` header if sent); its info.
    Also the MLflow artifacts proxy's upload."""
    limit = service_state(request).max_upload_bytes
    expected = request.headers.get(SHA256_HEADER)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ValidationError(f"Upload of {path!r} is larger than the service's limit of {limit} bytes")
            digest.update(chunk)
            spool.write(chunk)
        if expected and expected.lower() != digest.hexdigest():
            raise IntegrityError(
                f"Upload of {path!r} arrived with SHA-256 {digest.hexdigest()}, the client sent {expected}"
            )
        spool.seek(0)
        return await run_in_threadpool(_write, store, path, spool)


def object_chunks(store: AbstractDatastore, path: str) -> Iterator[bytes]:
    with store.open_read(path) as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def _write(store: AbstractDatastore, path: str, source: Any) -> Any:
    with store.open_write(path) as target:
        shutil.copyfileobj(source, target, CHUNK_SIZE)
    return store.info(path)
