"""The datastore contract, run on every backend: the local folder and Azure Blob (on Azurite).

Azurite's connection string comes from ``AML_TEST_AZURITE_CONNECTION_STRING`` (scripts/services.sh
starts the emulator and exports it). Without it the blob cases are skipped locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.datastores import AbstractDatastore, LocalDatastore, build_datastore
from airflow_aml.exceptions import (
    ArtifactNotFoundError,
    DatastoreError,
    IntegrityError,
    PathEscapeError,
    ValidationError,
)

AZURITE_ENV = "AML_TEST_AZURITE_CONNECTION_STRING"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def azurite_connection_string() -> str:
    value = os.environ.get(AZURITE_ENV)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{AZURITE_ENV} is not set in CI: source scripts/services.sh to start Azurite")
        pytest.skip(f"{AZURITE_ENV} not set (source scripts/services.sh)")
    return value


@pytest.fixture
def container() -> Iterator[tuple[str, str]]:
    """A fresh container on Azurite: (connection string, container name); deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    conn = azurite_connection_string()
    name = f"aml-test-{secrets.token_hex(6)}"
    service = BlobServiceClient.from_connection_string(conn)
    service.create_container(name)
    yield conn, name
    service.delete_container(name)


@pytest.fixture(params=["local", "azure_blob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AbstractDatastore:
    if request.param == "local":
        return LocalDatastore("store", tmp_path / "root")
    conn, name = request.getfixturevalue("container")
    return build_datastore("store", "azure_blob", {"connection_string": conn, "container": name,
                                                   "prefix": "ws1"})


# ------------------------------------------------------------------ contract
def test_round_trip_info_and_normalized_paths(store: AbstractDatastore) -> None:
    info = store.write_bytes("runs/1/outputs/model.pkl", b"weights")
    assert (info.path, info.size, info.sha256) == ("runs/1/outputs/model.pkl", 7, sha(b"weights"))
    assert store.read_bytes("runs//1/./outputs/model.pkl") == b"weights"
    assert store.info("runs/1/outputs/model.pkl") == info
    assert store.exists("runs/1/outputs/model.pkl") and not store.exists("runs/1")


def test_missing_object(store: AbstractDatastore) -> None:
    with pytest.raises(ArtifactNotFoundError):
        store.info("nope.txt")
    with pytest.raises(ArtifactNotFoundError):
        store.read_bytes("nope.txt")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "%2e%2e/x", "/etc/passwd", "a/%2E%2E/%2e%2E/b"])
def test_escaping_paths_refused(store: AbstractDatastore, bad: str) -> None:
    with pytest.raises(PathEscapeError):
        store.write_bytes(bad, b"x")
    with pytest.raises(PathEscapeError):
        store.read_bytes(bad)


def test_list_prefix_and_delete_folder(store: AbstractDatastore) -> None:
    for path in ["a/1.txt", "a/b/2.txt", "ab/3.txt", "c.txt"]:
        store.write_bytes(path, path.encode())
    assert [o.path for o in store.list("a")] == ["a/1.txt", "a/b/2.txt"]  # "ab" is not below "a"
    assert [o.path for o in store.list()] == ["a/1.txt", "a/b/2.txt", "ab/3.txt", "c.txt"]
    assert [o.path for o in store.list("c.txt")] == ["c.txt"]
    store.delete("a")
    assert [o.path for o in store.list()] == ["ab/3.txt", "c.txt"]
    store.delete("missing")  # no error


def test_large_file_upload_download_folder(store: AbstractDatastore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(20 * 1024 * 1024 + 123)  # several blocks plus a partial one
    (src / "sub" / "big.bin").write_bytes(big)
    (src / "small.txt").write_bytes(b"hi")
    infos = store.upload(src, "snap", show_progress=False)
    assert sorted(i.path for i in infos) == ["snap/small.txt", "snap/sub/big.bin"]
    assert store.info("snap/sub/big.bin").sha256 == sha(big)
    out = tmp_path / "out"
    store.download(out, "snap", show_progress=False)
    assert (out / "sub" / "big.bin").read_bytes() == big
    assert (out / "small.txt").read_bytes() == b"hi"


def test_empty_object(store: AbstractDatastore) -> None:
    assert store.write_bytes("empty", b"").size == 0
    assert store.read_bytes("empty") == b""


def test_failed_write_is_not_visible(store: AbstractDatastore) -> None:
    store.write_bytes("model.bin", b"old")
    with pytest.raises(RuntimeError), store.open_write("model.bin") as f:
        f.write(os.urandom(9 * 1024 * 1024))  # at least one block already staged
        raise RuntimeError("cut")
    assert store.read_bytes("model.bin") == b"old"
    with pytest.raises(RuntimeError), store.open_write("new.bin") as f:
        f.write(b"x" * 100)
        raise RuntimeError("cut")
    assert not store.exists("new.bin")


# ------------------------------------------------------------------ blob only: pagination, faults
def test_blob_listing_follows_pages(container: tuple[str, str]) -> None:
    from airflow_aml.datastores.blob import BlobDatastore

    conn, name = container
    store = build_datastore("store", "azure_blob", {"connection_string": conn, "container": name})
    assert isinstance(store, BlobDatastore)
    for i in range(7):
        store.write_bytes(f"p/{i:02d}", b"x")
    listed = [o.path for o in store._iter("p", page_size=2)]  # four pages of at most two
    assert listed == [f"p/{i:02d}" for i in range(7)]


def test_blob_corrupted_bytes_raise_integrity_error(container: tuple[str, str], tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    conn, name = container
    store = build_datastore("store", "azure_blob", {"connection_string": conn, "container": name})
    store.write_bytes("m.bin", b"good bytes")
    raw = BlobServiceClient.from_connection_string(conn).get_blob_client(name, "m.bin")
    metadata = raw.get_blob_properties().metadata
    raw.upload_blob(b"evil bytes", overwrite=True, metadata=metadata)  # same size, same record
    with pytest.raises(IntegrityError, match="corrupt"):
        store.read_bytes("m.bin")
    target = tmp_path / "m.bin"
    with pytest.raises(IntegrityError):
        store.download_file("m.bin", target)
    assert not target.exists() and os.listdir(tmp_path) == []  # a failed download leaves no file
    raw.upload_blob(b"no record", overwrite=True)  # metadata gone: nothing to verify against
    with pytest.raises(IntegrityError, match="no recorded SHA-256"):
        store.read_bytes("m.bin")


class _CuttingProxy:
    """A TCP proxy to Azurite that drops every connection once ``cut_after`` bytes went up, or
    once ``cut_down_after`` bytes came down."""

    def __init__(self, port: int, cut_after: int | None, cut_down_after: int | None = None) -> None:
        self.cut_after = cut_after
        self.cut_down_after = cut_down_after
        self._target = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.sent = 0
        self.received = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                if up:
                    self.sent += len(data)
                    if self.cut_after is not None and self.sent > self.cut_after:
                        break
                else:
                    self.received += len(data)
                    if self.cut_down_after is not None and self.received > self.cut_down_after:
                        break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._server.close()


def test_blob_upload_cut_mid_way_is_not_visible_and_retry_succeeds(
        container: tuple[str, str], tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    conn, name = container
    port = int(conn.split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0])
    proxy = _CuttingProxy(port, cut_after=12 * 1024 * 1024)  # past the first block, before the commit
    try:
        cut_conn = conn.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")
        # No SDK retries: each retry would get a fresh connection and the cut would be per-connection.
        from azure.storage.blob import BlobServiceClient as Service

        client = Service.from_connection_string(cut_conn, retry_total=0).get_container_client(name)
        from airflow_aml.datastores.blob import BlobDatastore

        store = BlobDatastore("store", client)
        src = tmp_path / "big.bin"
        data = os.urandom(30 * 1024 * 1024)
        src.write_bytes(data)
        with pytest.raises(DatastoreError):
            store.upload_file(src, "big.bin")
        assert proxy.sent > 8 * 1024 * 1024  # the cut happened mid-upload, not before it
        direct = BlobServiceClient.from_connection_string(conn).get_container_client(name)
        assert [b.name for b in direct.list_blobs()] == []  # nothing under its name
        proxy.cut_after = None  # the network is back: the retry goes through
        info = store.upload_file(src, "big.bin")
        assert info.sha256 == sha(data)
        assert store.read_bytes("big.bin") == data
    finally:
        proxy.close()


def test_blob_download_cut_mid_way_leaves_no_file_and_retry_verifies(
        container: tuple[str, str], tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    from airflow_aml.datastores.blob import BlobDatastore

    conn, name = container
    data = os.urandom(30 * 1024 * 1024)
    BlobDatastore("store", BlobServiceClient.from_connection_string(conn).get_container_client(name)).write_bytes(
        "big.bin", data)
    port = int(conn.split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0])
    proxy = _CuttingProxy(port, cut_after=None, cut_down_after=12 * 1024 * 1024)
    try:
        cut_conn = conn.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")
        client = BlobServiceClient.from_connection_string(cut_conn, retry_total=0).get_container_client(name)
        store = BlobDatastore("store", client)
        out = tmp_path / "down"
        out.mkdir()
        with pytest.raises(DatastoreError):
            store.download_file("big.bin", out / "big.bin")
        assert proxy.received > 8 * 1024 * 1024  # cut mid-download, not before it
        assert os.listdir(out) == []  # neither the file nor a partial temporary one
        proxy.cut_down_after = None  # the network is back
        store.download_file("big.bin", out / "big.bin")
        assert sha((out / "big.bin").read_bytes()) == sha(data)
    finally:
        proxy.close()


def test_unknown_kind_lists_azure_blob() -> None:
    with pytest.raises(ValidationError, match="azure_blob"):
        build_datastore("x", "nope", {})
