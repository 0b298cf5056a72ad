"""A datastore reached through the workspace service (``/datastores/{name}/objects``), for a
client that cannot reach the datastore itself: a laptop on a served workspace, a container, a
cluster node with only a run token.

Writes are spooled locally and sent when the stream closes cleanly, with their SHA-256, which the
service checks before anything is stored: a cut or corrupted upload leaves nothing. Reads are
verified against the SHA-256 the service sends (``X-AML-SHA256``) before the caller sees a byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, Any, Protocol, cast
from urllib.parse import quote

from airflow_aml.datastores.base import AbstractDatastore, ObjectInfo
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import IntegrityError
from airflow_aml.hashing import CHUNK_SIZE

SHA256_HEADER = "X-AML-SHA256"
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_PAGE = 1000


class ServiceTransport(Protocol):
    """What this datastore needs of the service client (``store.http.client.ServiceClient``)."""

    def request(self, verb: str, path: str, *, params: Mapping[str, Any] | None = ...) -> Any: ...

    def stream(self, path: str) -> AbstractContextManager[Any]: ...

    def upload(self, path: str, content: Any, *, headers: Mapping[str, str]) -> Any: ...


class ServiceDatastore(AbstractDatastore):
    def __init__(self, transport: ServiceTransport, workspace: str, name: str) -> None:
        self.name = name
        self._transport = transport
        self._base = f"/workspaces/{quote(workspace, safe='')}/datastores/{quote(name, safe='')}"

    def __repr__(self) -> str:
        return f"ServiceDatastore({self.name!r})"

    def _object(self, path: str) -> str:
        return f"{self._base}/objects/{quote(normalize_path(path))}"

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[IO[bytes]]:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            with self._transport.stream(self._object(path)) as response:
                expected = response.headers.get(SHA256_HEADER, "")
                digest = hashlib.sha256()
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    digest.update(chunk)
                    spool.write(chunk)
            if expected and digest.hexdigest() != expected:
                raise IntegrityError(
                    f"{path!r} from datastore {self.name!r} arrived with SHA-256 {digest.hexdigest()}, "
                    f"the service recorded {expected}"
                )
            spool.seek(0)
            yield cast(IO[bytes], spool)

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        target = self._object(path)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            yield cast(IO[bytes], spool)
            spool.seek(0)
            digest = hashlib.sha256()
            while chunk := spool.read(CHUNK_SIZE):
                digest.update(chunk)
            spool.seek(0)
            self._transport.upload(target, _read_chunks(spool), headers={
                SHA256_HEADER: digest.hexdigest(), "Content-Type": "application/octet-stream"})

    def info(self, path: str) -> ObjectInfo:
        data = self._transport.request("GET", f"{self._base}/info/{quote(normalize_path(path))}").json()
        return ObjectInfo(path=data["path"], size=data["size"], sha256=data["sha256"], modified=data["modified"])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {"limit": _PAGE}
        if prefix:
            params["prefix"] = normalize_path(prefix)
        first = self._page(params)  # eager, as every datastore: a bad prefix fails at the call
        return self._pages(params, first)

    def _page(self, params: Mapping[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = self._transport.request("GET", f"{self._base}/objects", params=params).json()
        return page

    def _pages(self, params: dict[str, Any], page: dict[str, Any]) -> Iterator[ObjectInfo]:
        while True:
            for item in page["items"]:
                yield ObjectInfo(path=item["path"], size=item["size"], sha256=item["sha256"],
                                 modified=item["modified"])
            if not page.get("next_cursor"):
                return
            page = self._page({**params, "cursor": page["next_cursor"]})

    def delete(self, path: str) -> None:
        self._transport.request("DELETE", self._object(path))


def _read_chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(CHUNK_SIZE):
        yield chunk
