"""The conveniences of AbstractDatastore rely on the five core methods only.

An in-memory stand-in implements just the core, as a new backend (Azure Blob) would, and gets
upload/download/read_bytes/write_bytes for free.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from airflow_aml.datastores import AbstractDatastore, ObjectInfo, normalize_path
from airflow_aml.exceptions import AlreadyExistsError, ArtifactNotFoundError, IntegrityError


class MemoryDatastore(AbstractDatastore):
    def __init__(self, name: str = "mem") -> None:
        self.name = name
        self.objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self.fail_reads = False

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[IO[bytes]]:
        data, _ = self._get(path)
        if not self.fail_reads:
            yield io.BytesIO(data)
            return

        class Failing(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                chunk = super().read(size)
                if not chunk:
                    raise IntegrityError(f"{path} is corrupt")
                return chunk

        yield Failing(data)

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        rel = normalize_path(path)
        buffer = io.BytesIO()
        yield buffer
        data = buffer.getvalue()
        info = ObjectInfo(rel, len(data), hashlib.sha256(data).hexdigest(), time.time())
        self.objects[rel] = (data, info)

    def info(self, path: str) -> ObjectInfo:
        return self._get(path)[1]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = normalize_path(prefix, allow_empty=True)
        for rel in sorted(self.objects):
            if not base or rel == base or rel.startswith(base + "/"):
                yield self.objects[rel][1]

    def delete(self, path: str) -> None:
        base = normalize_path(path)
        for rel in [r for r in self.objects if r == base or r.startswith(base + "/")]:
            del self.objects[rel]

    def _get(self, path: str) -> tuple[bytes, ObjectInfo]:
        rel = normalize_path(path)
        if rel not in self.objects:
            raise ArtifactNotFoundError(f"No object {rel!r} in datastore {self.name!r}")
        return self.objects[rel]


def test_conveniences_on_a_core_only_backend(tmp_path: Path) -> None:
    ds = MemoryDatastore()
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/a.txt").write_bytes(b"a")
    (tmp_path / "src/sub/b.txt").write_bytes(b"b")
    assert [i.path for i in ds.upload(tmp_path / "src", "t")] == ["t/a.txt", "t/sub/b.txt"]
    assert ds.exists("t/a.txt") and not ds.exists("t/zzz")
    assert ds.read_bytes("t/sub/b.txt") == b"b"
    assert ds.write_bytes("w", b"123").size == 3
    ds.download(tmp_path / "dst", "t")
    assert (tmp_path / "dst/sub/b.txt").read_bytes() == b"b"
    with pytest.raises(AlreadyExistsError):
        ds.upload_file(tmp_path / "src/a.txt", "t/a.txt", overwrite=False)


def test_failed_download_leaves_nothing(tmp_path: Path) -> None:
    ds = MemoryDatastore()
    ds.write_bytes("m.bin", b"x" * 5000)
    ds.fail_reads = True
    with pytest.raises(IntegrityError):
        ds.download_file("m.bin", tmp_path / "m.bin")
    assert list(tmp_path.iterdir()) == []
