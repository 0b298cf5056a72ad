"""The local datastore's commit: what is synced before anything is published, and link checks
below existing folders (the checks walk the path from the root with one lstat per component)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_aml.datastores import LocalDatastore
from airflow_aml.datastores import local as local_module
from airflow_aml.exceptions import PathEscapeError


def test_object_and_sidecar_bytes_are_synced_before_either_rename(ds: LocalDatastore, monkeypatch) -> None:
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.fstat(fd).st_ino))

    def replace(src: str, dst: str) -> None:
        events.append(("rename", os.lstat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ds.write_bytes("models/m/1/model.pkl", b"weights")

    renamed = [inode for kind, inode in events if kind == "rename"]
    data_inode = os.stat(ds.root / "data/models/m/1/model.pkl").st_ino
    meta_inode = os.stat(ds.root / "meta/models/m/1/model.pkl.json").st_ino
    assert sorted(renamed) == sorted([data_inode, meta_inode])  # the sidecar, then the object
    first_rename = next(i for i, (kind, _) in enumerate(events) if kind == "rename")
    synced_before = {inode for kind, inode in events[:first_rename] if kind == "fsync"}
    assert {data_inode, meta_inode} <= synced_before
    folder_inode = os.stat(ds.root / "data/models/m/1").st_ino
    assert ("fsync", folder_inode) in events[first_rename:]  # then the rename made durable


def test_a_failed_fsync_of_the_object_fails_the_write_and_publishes_nothing(ds: LocalDatastore, monkeypatch) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_size == len(b"the object's bytes"):  # the object, not its sidecar
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        ds.write_bytes("a/b.bin", b"the object's bytes")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not ds.exists("a/b.bin")
    assert [p.name for p in (ds.root / "data/a").iterdir()] == []  # no temporary file left


def test_fsync_together_reports_the_other_threads_failure(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as f:
        closed = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT)
        os.close(closed)
        with pytest.raises(OSError):  # EBADF from the thread, raised here
            local_module._fsync_together(f.fileno(), closed)
        local_module._fsync_together(f.fileno(), None)


def test_a_link_planted_below_existing_folders_is_refused(ds: LocalDatastore, outside: Path) -> None:
    ds.write_bytes("models/m/1/model.pkl", b"x")
    os.symlink(outside, ds.root / "data/models/m/2")
    with pytest.raises(PathEscapeError, match="outside the datastore root"):
        ds.write_bytes("models/m/2/model.pkl", b"planted")
    with pytest.raises(PathEscapeError):
        ds.read_bytes("models/m/2/secret.txt")
    os.symlink(outside, ds.root / "meta/models/m/3")
    with pytest.raises(PathEscapeError):
        ds.write_bytes("models/m/3/model.pkl", b"planted")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert ds.read_bytes("models/m/1/model.pkl") == b"x"


def test_a_path_below_a_missing_folder_is_checked_up_to_it(ds: LocalDatastore) -> None:
    ds.write_bytes("a.txt", b"x")
    ds.write_bytes("new/deep/er/b.txt", b"y")  # nothing below "new" existed: nothing to refuse
    assert ds.read_bytes("new/deep/er/b.txt") == b"y"
