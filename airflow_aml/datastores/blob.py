"""A datastore in an Azure Blob Storage container (kind ``azure_blob``), on ``azure-storage-blob``.

Objects are block blobs named ``<prefix>/<path>``. A write stages its blocks (several in flight
at once) and commits the block list only when the stream is closed cleanly, so an upload cut in
the middle leaves uncommitted blocks that the service discards and nothing under the blob's name.
The SHA-256 and size are recorded in the blob's metadata by that same commit, and every read
hashes the bytes and compares them at the end (IntegrityError on mismatch).

The SDK is imported lazily so that ``airflow_aml`` stays importable without the ``azure`` extra.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, cast

from airflow_aml.datastores.base import AbstractDatastore, ObjectInfo
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import ArtifactNotFoundError, DatastoreError, IntegrityError, ValidationError

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

BLOCK_SIZE = 8 * 1024 * 1024  # large enough to keep round trips few, small enough to keep RAM low
MAX_IN_FLIGHT = 4  # blocks staged (or ranges fetched) in parallel per transfer
_SHA_KEY = "aml_sha256"
_SIZE_KEY = "aml_size"


def _sdk_errors() -> tuple[type[BaseException], type[BaseException]]:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    return ResourceNotFoundError, AzureError


class _BlockWriter(io.RawIOBase):
    """Buffers into blocks, stages each full block in a thread pool, hashes on the way."""

    def __init__(self, blob: Any, what: str) -> None:
        super().__init__()
        self._blob = blob
        self._what = what
        self._buffer = bytearray()
        self._pool = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="aml-blob-put")
        self._pending: list[Future[None]] = []
        self.block_ids: list[str] = []
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self.hash.update(view)
        self.size += len(view)
        self._buffer += view
        while len(self._buffer) >= BLOCK_SIZE:
            self._stage(bytes(self._buffer[:BLOCK_SIZE]))
            del self._buffer[:BLOCK_SIZE]
        return len(view)

    def _stage(self, block: bytes) -> None:
        # Random ids: two concurrent writers of one blob never commit each other's blocks.
        block_id = base64.b64encode(secrets.token_bytes(24)).decode()
        self.block_ids.append(block_id)
        # Bounded memory: wait for the oldest block when MAX_IN_FLIGHT are already on the wire.
        if len(self._pending) >= MAX_IN_FLIGHT:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._blob.stage_block, block_id, block, len(block)))

    def finish(self) -> None:
        if self._buffer or not self.block_ids:
            self._stage(bytes(self._buffer))
            self._buffer.clear()
        for future in self._pending:
            future.result()
        self._pending.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


class _VerifyingReader(io.RawIOBase):
    """Streams a download's chunks, hashing them; verifies at the end against the metadata."""

    def __init__(self, chunks: Iterator[bytes], *, datastore: str, path: str, sha256: str, size: int) -> None:
        super().__init__()
        self._chunks = chunks
        self._datastore = datastore
        self._path = path
        self._sha256 = sha256
        self._size = size
        self._hash = hashlib.sha256()
        self._read = 0
        self._pending = b""
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = next(self._chunks, b"")
        n = min(len(buffer), len(self._pending))
        memoryview(buffer)[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self._read += n
        if not self._verified and (n == 0 or self._read >= self._size):
            self._verify()
        return n

    def _verify(self) -> None:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        while self._pending:  # bytes beyond the recorded size count as corruption
            self._hash.update(self._pending)
            self._read += len(self._pending)
            self._pending = next(self._chunks, b"")
        actual = self._hash.hexdigest()
        if actual != self._sha256:
            raise IntegrityError(
                f"Object {self._path!r} in datastore {self._datastore!r} is corrupt: its SHA-256 is "
                f"{actual} ({self._read} bytes) but {self._sha256} ({self._size} bytes) "
                "was recorded when it was written"
            )
        self._verified = True


class BlobDatastore(AbstractDatastore):
    """Objects in ``container`` below ``prefix``; the client comes ready-made (credentials are
    the builder's business, see ``build_blob_datastore``)."""

    def __init__(self, name: str, container: ContainerClient, prefix: str = "") -> None:
        self.name = name
        self._container = container
        self._prefix = normalize_path(prefix, allow_empty=True)

    def __repr__(self) -> str:
        return f"BlobDatastore({self.name!r}, container={self._container.container_name!r}, prefix={self._prefix!r})"

    # -- names
    def _blob_name(self, rel: str) -> str:
        return f"{self._prefix}/{rel}" if self._prefix and rel else (self._prefix or rel)

    def _rel(self, blob_name: str) -> str:
        return blob_name[len(self._prefix) + 1:] if self._prefix else blob_name

    def _record(self, rel: str, metadata: dict[str, str] | None) -> tuple[str, int]:
        metadata = metadata or {}
        try:
            return metadata[_SHA_KEY], int(metadata[_SIZE_KEY])
        except (KeyError, ValueError):
            # A blob written by someone else, or overwritten behind our back: nothing to verify
            # against, which is as bad as a wrong checksum.
            raise IntegrityError(
                f"Object {rel!r} in datastore {self.name!r} has no recorded SHA-256; it was not "
                "written through this datastore"
            ) from None

    # -- core
    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[IO[bytes]]:
        rel = normalize_path(path)
        not_found, azure_error = _sdk_errors()
        try:
            # One request gives both the bytes and the metadata of the same blob version.
            downloader = self._container.download_blob(self._blob_name(rel), max_concurrency=MAX_IN_FLIGHT)
        except not_found:
            raise ArtifactNotFoundError(f"No object {rel!r} in datastore {self.name!r}") from None
        except azure_error as exc:
            raise DatastoreError(f"Reading {rel!r} from datastore {self.name!r} failed: {exc}") from exc
        sha256, size = self._record(rel, downloader.properties.metadata)
        reader = _VerifyingReader(iter(downloader.chunks()), datastore=self.name, path=rel,
                                  sha256=sha256, size=size)
        try:
            yield cast(IO[bytes], io.BufferedReader(reader, BLOCK_SIZE))
        except azure_error as exc:
            raise DatastoreError(f"Reading {rel!r} from datastore {self.name!r} failed: {exc}") from exc
        finally:
            reader.close()

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        rel = normalize_path(path)
        _, azure_error = _sdk_errors()
        blob = self._container.get_blob_client(self._blob_name(rel))
        writer = _BlockWriter(blob, f"Writing {rel!r} to datastore {self.name!r}")
        try:
            yield cast(IO[bytes], writer)
            writer.finish()
            # The commit is the only moment the blob appears (or changes): whole, with its checksum.
            blob.commit_block_list(
                writer.block_ids,
                metadata={_SHA_KEY: writer.hash.hexdigest(), _SIZE_KEY: str(writer.size)},
            )
        except azure_error as exc:
            raise DatastoreError(f"Writing {rel!r} to datastore {self.name!r} failed: {exc}") from exc
        finally:
            writer.close()

    def info(self, path: str) -> ObjectInfo:
        rel = normalize_path(path)
        not_found, _ = _sdk_errors()
        try:
            props = self._container.get_blob_client(self._blob_name(rel)).get_blob_properties()
        except not_found:
            raise ArtifactNotFoundError(f"No object {rel!r} in datastore {self.name!r}") from None
        sha256, size = self._record(rel, props.metadata)
        return ObjectInfo(path=rel, size=size, sha256=sha256, modified=props.last_modified.timestamp())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = normalize_path(prefix, allow_empty=True)  # eager: bad prefixes fail here
        return self._iter(base)

    def _iter(self, base: str, page_size: int | None = None) -> Iterator[ObjectInfo]:
        if base and self.exists(base):
            yield self.info(base)
        start = self._blob_name(base)
        start = f"{start}/" if start else None
        # The SDK's pager follows the continuation markers; the service lists in name order.
        blobs = self._container.list_blobs(name_starts_with=start, include=["metadata"],
                                           results_per_page=page_size)
        for item in blobs:
            rel = self._rel(item.name)
            sha256, size = self._record(rel, item.metadata)
            yield ObjectInfo(path=rel, size=size, sha256=sha256, modified=item.last_modified.timestamp())

    def delete(self, path: str) -> None:
        rel = normalize_path(path)
        not_found, _ = _sdk_errors()
        names = [self._blob_name(rel)]
        names += [b.name for b in self._container.list_blobs(name_starts_with=self._blob_name(rel) + "/")]
        for name in names:
            with contextlib.suppress(not_found):
                self._container.delete_blob(name)


# The Airflow layer (airflow_aml.hooks.wasb) registers how a ``wasb_conn_id`` becomes a service
# client through WasbHook: this layer must not import Airflow, so it only knows the seam.
_wasb_service_factory: Callable[[str], Any] | None = None


def register_wasb_service_factory(factory: Callable[[str], Any]) -> None:
    """``factory(wasb_conn_id)`` returns a ``BlobServiceClient`` built from that connection."""
    global _wasb_service_factory
    _wasb_service_factory = factory


def build_blob_datastore(name: str, config: dict[str, Any]) -> BlobDatastore:
    """Kind ``azure_blob``: ``container`` plus ``wasb_conn_id`` (an Airflow connection), or
    ``connection_string``, or ``account_url``
    (with ``credential``: an account key, a SAS token, or nothing for DefaultAzureCredential).

    The secret values arrive here already resolved from the workspace's secrets (see
    ``resolve_blob_secrets``); the datastore record only names them.
    """
    container = config.get("container")
    if not isinstance(container, str) or len(container) < 3:
        raise ValidationError(f"Datastore {name!r} of kind 'azure_blob' needs a 'container' (3+ characters)")
    prefix = config.get("prefix") or ""
    wasb_conn_id = config.get("wasb_conn_id")
    if wasb_conn_id:
        if _wasb_service_factory is None:
            raise ValidationError(
                f"Datastore {name!r} names the wasb connection {wasb_conn_id!r}, which needs the Airflow "
                "layer: import airflow_aml.hooks.wasb (the provider does so) or configure credentials"
            )
        service = _wasb_service_factory(wasb_conn_id)
        return BlobDatastore(name, service.get_container_client(container), prefix)
    connection_string = config.get("connection_string")
    account_url = config.get("account_url")
    if not connection_string and not account_url:
        raise ValidationError(
            f"Datastore {name!r} of kind 'azure_blob' needs 'wasb_conn_id', 'account_url' or 'connection_string'"
        )
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError as exc:
        raise ValidationError(
            f"Datastore {name!r} of kind 'azure_blob' needs azure-storage-blob: pip install 'airflow-aml[azure]'"
        ) from exc
    if connection_string:
        service = BlobServiceClient.from_connection_string(connection_string)
    else:
        credential = config.get("credential")
        if not credential:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        service = BlobServiceClient(account_url, credential=credential)
    return BlobDatastore(name, service.get_container_client(container), prefix)
