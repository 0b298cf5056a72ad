"""A run's files and its snapshot's contents, for the run page of the workspace UI.

- ``GET /runs/{id}/files``: the run's files (``outputs/``, ``logs/`` ... under ``runs/<id>/``) with
  the datastore that holds them, so that a client downloads each through the datastore object
  route (``file_routes.download_object``) without knowing where the run's files were written.
- ``GET /runs/{id}/snapshot/entries``: the entries (name, size) of the run's snapshot zip, read
  from its central directory, nothing extracted.
- ``GET /runs/{id}/snapshot/entries/{name}``: one entry's bytes, decompressed.

Authorization is the run's: the run is read through the store route's ``get_run`` call (a role
that may read the workspace, a Reader too; a run token only for its run and its descendants),
and the files through the workspace's datastore opened for the caller (read-only for a Reader).

A datastore stream reads forward only (it checks the SHA-256 at its end), while a zip's central
directory sits at the end of the file: the zip is spooled to a temporary file, verified, then read
with ``zipfile``. A snapshot is at most ``snapshots.DEFAULT_MAX_SNAPSHOT_BYTES`` (300 MiB).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from airflow_aml.context import DATASTORE_PROPERTY, SNAPSHOT_NAME, run_file, run_prefix
from airflow_aml.datastores import AbstractDatastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.entities import RunRecord
from airflow_aml.exceptions import ArtifactNotFoundError, UnsafeArchiveError
from airflow_aml.hashing import CHUNK_SIZE
from airflow_aml.service.access import Access
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access
from airflow_aml.service.store_routes import (
    DEFAULT_PAGE_SIZE,
    ENDPOINTS_BY_METHOD,
    MAX_PAGE_SIZE,
    call_store,
    decode_cursor,
    encode_cursor,
)
from airflow_aml.snapshots import DEFAULT_MAX_ENTRIES

AccessDep = Annotated[Access, Depends(get_access)]
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
# Files of the run folder that are not the run's outputs: the snapshot has its own section.
_HIDDEN = frozenset({SNAPSHOT_NAME})


class RunFileModel(BaseModel):
    name: str  # relative to the run's folder: outputs/model.pkl
    path: str  # in the datastore: runs/<id>/outputs/model.pkl
    size: int
    modified: float


class RunFilePage(BaseModel):
    datastore: str
    items: list[RunFileModel]
    next_cursor: str | None = None


class SnapshotEntryModel(BaseModel):
    name: str  # POSIX path inside the zip
    size: int  # uncompressed
    compressed_size: int


class SnapshotEntries(BaseModel):
    datastore: str
    path: str  # the zip in the datastore: runs/<id>/snapshot.zip
    size: int  # of the zip
    sha256: str
    items: list[SnapshotEntryModel]


def run_datastore(access: Access, run: RunRecord) -> AbstractDatastore:
    """The datastore holding the run's files: the one recorded on the run, else the default."""
    context = access.context(run.workspace)
    name = run.properties.get(DATASTORE_PROPERTY)
    return context.get_datastore(name) if name else context.get_default_datastore()


def _run(access: Access, run_id: str) -> RunRecord:
    run: RunRecord = call_store(ENDPOINTS_BY_METHOD["get_run"], access, {"run_id": run_id})
    return run


def _spooled_snapshot(store: AbstractDatastore, run_id: str) -> IO[bytes]:
    """The run's snapshot zip in a temporary file (seekable), read to its end so that its SHA-256
    was checked. The caller closes it (which deletes it)."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 (returned)
    try:
        with store.open_read(run_file(run_id, SNAPSHOT_NAME)) as source:
            shutil.copyfileobj(source, spool, CHUNK_SIZE)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]


def _open_zip(spool: IO[bytes], run_id: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(spool)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UnsafeArchiveError(f"The snapshot of run {run_id!r} is not a readable zip archive: {exc}") from exc


def _entry_chunks(spool: IO[bytes], archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with archive.open(info) as entry:  # zipfile checks the entry's CRC-32 at its end
            while chunk := entry.read(CHUNK_SIZE):
                yield chunk
    finally:
        archive.close()
        spool.close()


def run_file_router() -> APIRouter:
    router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)

    @router.get("/runs/{run_id}/files", operation_id="list_run_files", response_model=RunFilePage)
    def list_run_files(
        access: AccessDep, run_id: str,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[str | None, Query()] = None,
    ) -> RunFilePage:
        """The run's files in path order (not its snapshot: see ``/snapshot/entries``); download
        one with ``GET /workspaces/{workspace}/datastores/{datastore}/objects/{path}``."""
        store = run_datastore(access, _run(access, run_id))
        folder = run_prefix(run_id) + "/"
        offset = decode_cursor(cursor)
        items: list[RunFileModel] = []
        more = False
        index = 0
        for info in store.list(folder):
            name = info.path[len(folder):]
            if name in _HIDDEN:
                continue
            if index >= offset:
                if len(items) == limit:
                    more = True
                    break
                items.append(RunFileModel(name=name, path=info.path, size=info.size, modified=info.modified))
            index += 1
        return RunFilePage(datastore=store.name, items=items,
                           next_cursor=encode_cursor(offset + limit) if more else None)

    @router.get("/runs/{run_id}/snapshot/entries", operation_id="list_snapshot_entries",
                response_model=SnapshotEntries)
    def list_snapshot_entries(access: AccessDep, run_id: str) -> SnapshotEntries:
        """The files of the run's snapshot zip (404 when the run has none), in the zip's order
        (sorted by path: ``create_snapshot`` writes them so)."""
        store = run_datastore(access, _run(access, run_id))
        path = run_file(run_id, SNAPSHOT_NAME)
        info = store.info(path)
        with _spooled_snapshot(store, run_id) as spool, _open_zip(spool, run_id) as archive:
            entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        if len(entries) > DEFAULT_MAX_ENTRIES:
            raise UnsafeArchiveError(
                f"The snapshot of run {run_id!r} has {len(entries)} entries, over {DEFAULT_MAX_ENTRIES}")
        return SnapshotEntries(
            datastore=store.name, path=path, size=info.size, sha256=info.sha256,
            items=[SnapshotEntryModel(name=entry.filename, size=entry.file_size,
                                      compressed_size=entry.compress_size) for entry in entries],
        )

    @router.get("/runs/{run_id}/snapshot/entries/{name:path}", operation_id="download_snapshot_entry",
                responses={200: {"content": {"application/octet-stream": {}}, "description": "The entry's bytes"}})
    def download_snapshot_entry(access: AccessDep, run_id: str, name: str) -> StreamingResponse:
        """One file of the run's snapshot, decompressed."""
        store = run_datastore(access, _run(access, run_id))
        wanted = normalize_path(name)
        spool = _spooled_snapshot(store, run_id)
        try:
            archive = _open_zip(spool, run_id)
            try:
                info = archive.getinfo(wanted)
            except KeyError:
                archive.close()
                raise ArtifactNotFoundError(f"The snapshot of run {run_id!r} has no file {wanted!r}") from None
        except BaseException:
            spool.close()
            raise
        return StreamingResponse(_entry_chunks(spool, archive, info), media_type="application/octet-stream",
                                 headers={"Content-Length": str(info.file_size)})

    return router
