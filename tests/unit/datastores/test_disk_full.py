"""A full disk is reported naming what was written and where, on a real 256 KiB tmpfs.

Every case fills the device for real (no mocked ``write``): the local datastore's object and
sidecar writes, a download onto a full disk, a snapshot written to one and an extraction into one.
Nothing half-written stays behind, and an object that existed keeps its old bytes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.datastores.local import LocalDatastore
from airflow_aml.exceptions import StorageFullError
from airflow_aml.snapshots import create_snapshot, safe_extract

BIG = os.urandom(1024 * 1024)  # incompressible, 4x the device


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True,
        check=False,
    )
    if result.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs as root and must be able to mount a tmpfs: {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (not root?): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".aml-tmp-" in p.name or ".aml-extract-" in p.name)


def test_a_datastore_write_names_the_object_and_keeps_the_old_one(small_disk: Path) -> None:
    store = LocalDatastore("small", small_disk / "root")
    store.write_bytes("models/m.bin", b"old bytes")
    with pytest.raises(StorageFullError) as caught:
        store.write_bytes("models/m.bin", BIG)
    message = str(caught.value)
    assert message.startswith("Writing 'models/m.bin' to datastore 'small': no space left on the device of")
    assert str(small_disk / "root") in message and "MiB free" in message
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert store.read_bytes("models/m.bin") == b"old bytes"
    assert _leftovers(small_disk) == []


def test_a_download_onto_a_full_disk_names_the_object(small_disk: Path, tmp_path: Path) -> None:
    store = LocalDatastore("big", tmp_path / "roomy")
    store.write_bytes("data/big.bin", BIG)
    with pytest.raises(StorageFullError, match=r"^Downloading 'data/big.bin' from datastore 'big' to .*: no space"):
        store.download(small_disk / "out", "data")
    assert _leftovers(small_disk) == [] and not (small_disk / "out" / "big.bin").exists()


def test_snapshot_and_extraction_onto_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    (source / "data.bin").write_bytes(BIG)
    with pytest.raises(StorageFullError, match=r"^Writing the snapshot of .*src.* no space left"):
        create_snapshot(source, small_disk / "snapshot.zip")
    assert sorted(p.name for p in small_disk.iterdir()) == []

    archive = tmp_path / "snapshot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.py", "print('hi')\n")
        zf.writestr("data.bin", BIG)
    with pytest.raises(StorageFullError, match=r"^Extracting 'data.bin' of .*snapshot.zip.*: no space left"):
        safe_extract(archive, small_disk / "restored")
    assert sorted(p.name for p in small_disk.iterdir()) == []
