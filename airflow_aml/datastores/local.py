"""A datastore in a local folder: the embedded default.

Layout under ``root``::

    data/<path>           the object's bytes
    meta/<path>.json      {"sha256", "size", "modified"}: recorded while writing, checked on read
    .lock                 serialises the commit of (sidecar, object) pairs, across processes

Every write streams into a temporary file next to its target (hashing as it goes), is fsynced
and then renamed into place, so readers see the old object or the new one, never half of one.
The sidecar is committed first and the object second, both under an exclusive lock that readers
share: two writers of one path can never leave one writer's bytes with the other's checksum, and
a crash between the two renames of a new object leaves only an orphan sidecar, which nothing
lists.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from airflow_aml.datastores._files import TEMP_PREFIX, create_temp_file, disk_full_named
from airflow_aml.datastores.base import AbstractDatastore, ObjectInfo
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import (
    ArtifactNotFoundError,
    ConflictError,
    IntegrityError,
    PathEscapeError,
    ValidationError,
)
from airflow_aml.hashing import CHUNK_SIZE

try:  # POSIX: a lock that also holds between processes (scheduler, workers, the CLI)
    import fcntl
except ImportError:  # pragma: no cover - Windows: in-process only
    fcntl = None  # type: ignore[assignment]

_SIDECAR_SUFFIX = ".json"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PROCESS_LOCK = threading.Lock()  # stands in for fcntl where it does not exist


@dataclass(frozen=True)
class _Record:
    sha256: str
    size: int
    modified: float


class _VerifyingReader(io.RawIOBase):
    """Hashes what is read; at the end of the object, compares with the recorded SHA-256.

    The check runs when a read returns nothing (EOF) or as soon as the recorded size has been
    read, so ``f.read(size)`` is verified as well as ``f.read()``; bytes beyond the recorded size
    count as corruption.
    """

    def __init__(self, raw: io.FileIO, *, datastore: str, path: str, record: _Record) -> None:
        super().__init__()
        self._raw = raw
        self._datastore = datastore
        self._path = path
        self._record = record
        self._hash = hashlib.sha256()
        self._read = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer) or 0
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self._read += n
        if not self._verified and (n == 0 or self._read >= self._record.size):
            self._verify()
        return n

    def _verify(self) -> None:
        # Drain anything past the recorded size into the hash, so that the error names the real
        # digest of what is stored.
        while extra := self._raw.read(CHUNK_SIZE):
            self._hash.update(extra)
            self._read += len(extra)
        actual = self._hash.hexdigest()
        if actual != self._record.sha256:
            raise IntegrityError(
                f"Object {self._path!r} in datastore {self._datastore!r} is corrupt: its SHA-256 is "
                f"{actual} ({self._read} bytes) but {self._record.sha256} ({self._record.size} bytes) "
                "was recorded when it was written"
            )
        self._verified = True

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _HashingWriter(io.RawIOBase):
    """Writes into the temporary file and hashes the bytes on their way; a full disk is reported
    naming the object (``what``) and the datastore's folder."""

    def __init__(self, raw: io.FileIO, what: str, folder: str | os.PathLike[str]) -> None:
        super().__init__()
        self._raw = raw
        self._what = what
        self._folder = folder
        self.hash = hashlib.sha256()
        self.size = 0
        self.committed: ObjectInfo | None = None  # what open_write published, once it has

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        written = 0
        with disk_full_named(self._what, self._folder):
            while written < len(view):  # FileIO.write may write less than asked
                written += self._raw.write(view[written:]) or 0
        self.hash.update(view)
        self.size += written
        return written

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        # Closed by the caller inside the ``with``: sync now, the commit then has nothing to sync.
        if not self._raw.closed:
            try:
                with disk_full_named(self._what, self._folder):
                    os.fsync(self._raw.fileno())  # the rename must never publish unflushed bytes
            finally:
                self._raw.close()
        super().close()

    def release(self) -> None:
        """Close without syncing: the commit synced the bytes already, or they are discarded."""
        self._raw.close()
        super().close()


class LocalDatastore(AbstractDatastore):
    """Files under ``root`` on the local filesystem (or any mounted share with POSIX renames)."""

    def __init__(self, name: str, root: str | Path) -> None:
        # No I/O beyond resolving the root: building a datastore only validates its config.
        self.name = name
        self.root = Path(os.path.realpath(os.fspath(root)))
        self._data = os.path.join(self.root, "data")
        self._meta = os.path.join(self.root, "meta")
        self._lock_path = os.path.join(self.root, ".lock")

    def __repr__(self) -> str:
        return f"LocalDatastore(name={self.name!r}, root={str(self.root)!r})"

    # ------------------------------------------------------------------ path resolution
    def _resolve(self, path: str, *, allow_empty: bool = False) -> tuple[str, str, str]:
        """(normalized path, object file, sidecar file); PathEscapeError before touching anything."""
        rel = normalize_path(path, allow_empty=allow_empty)
        segments = rel.split("/") if rel else []
        if any(segment.startswith(TEMP_PREFIX) for segment in segments):
            raise ValidationError(
                f"Datastore path {path!r} uses the reserved prefix {TEMP_PREFIX!r} (temporary files)"
            )
        data_file = os.path.join(self._data, *segments)
        meta_file = os.path.join(self._meta, *segments) + (_SIDECAR_SUFFIX if rel else "")
        self._check_no_links(path, data_file)
        self._check_no_links(path, meta_file)
        return rel, data_file, meta_file

    def _check_no_links(self, path: str, lexical: str) -> None:
        """Refuse a path that goes through a symbolic link inside the root.

        The datastore never creates links, so any link was planted; following it could read or
        overwrite files outside the root. Checked again right before each write's rename.

        One ``lstat`` per component from the root down, stopping at the first that does not
        exist (nothing below it can be a link): ``realpath`` did the same walk over every
        component above the root too, about 10x the system calls. The folders above the root
        were resolved when the datastore was built (``self.root`` is a real path).
        """
        root = str(self.root)
        current = root
        for part in lexical[len(root) + 1:].split(os.sep):
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(mode):
                self._refuse_link(path, lexical)

    def _refuse_link(self, path: str, lexical: str) -> None:
        real = os.path.realpath(lexical)
        root = str(self.root)
        where = "outside" if os.path.commonpath([root, real]) != root else "inside"
        raise PathEscapeError(
            f"Datastore path {path!r} goes through a symbolic link in datastore {self.name!r} "
            f"(it resolves to {real!r}, {where} the datastore root); links are never followed"
        )

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - Windows
            with _PROCESS_LOCK:
                yield
            return
        # One open file description per acquisition, so the lock also holds between threads.
        flags = os.O_RDWR | _O_CLOEXEC | (os.O_CREAT if exclusive else 0)
        try:
            fd = os.open(self._lock_path, flags, 0o644)
        except FileNotFoundError:
            fd = None
            if exclusive:
                # No root yet: the first write creates it (only then, not on every write).
                os.makedirs(self.root, exist_ok=True)
                fd = os.open(self._lock_path, flags, 0o644)
        if fd is None:
            # No write was ever committed here: nothing to be consistent with, and a read must
            # not create the datastore's folders as a side effect.
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ sidecars
    def _read_record(self, rel: str, meta_file: str) -> _Record:
        try:
            with open(meta_file, "rb") as f:
                raw = json.load(f)
            return _Record(sha256=str(raw["sha256"]), size=int(raw["size"]), modified=float(raw["modified"]))
        except FileNotFoundError:
            raise IntegrityError(
                f"Object {rel!r} in datastore {self.name!r} has no checksum record ({meta_file}); "
                "it was not written through the datastore"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"The checksum record of object {rel!r} in datastore {self.name!r} is unreadable: {exc}"
            ) from exc

    def _not_found(self, rel: str) -> ArtifactNotFoundError:
        return ArtifactNotFoundError(f"No object {rel!r} in datastore {self.name!r}")

    # ------------------------------------------------------------------ core
    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[IO[bytes]]:
        rel, data_file, meta_file = self._resolve(path)
        for _ in range(2):
            # Without a lock file no write ever committed, so _locked holds nothing; if the first
            # writers committed meanwhile, the object and its record may come from two of them:
            # read the pair again, now under the lock.
            lock_existed = os.path.exists(self._lock_path)
            raw, record = self._open_with_record(path, rel, data_file, meta_file)
            if lock_existed or not os.path.exists(self._lock_path):
                break
            raw.close()
        reader = _VerifyingReader(raw, datastore=self.name, path=rel, record=record)
        try:
            yield cast(IO[bytes], reader)
        finally:
            reader.close()

    def _open_with_record(self, path: str, rel: str, data_file: str, meta_file: str) -> tuple[io.FileIO, _Record]:
        with self._locked(exclusive=False):
            # Open the object and read its record under one shared lock: the pair is consistent
            # even if a writer replaces both a moment later (we keep reading the old inode).
            try:
                fd = os.open(data_file, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise self._not_found(rel) from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a link planted after the check above
                    raise PathEscapeError(
                        f"Datastore path {path!r} is a symbolic link in datastore {self.name!r}"
                    ) from exc
                raise
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise self._not_found(rel)  # a folder is not an object
                raw = io.FileIO(fd, "rb", closefd=True)
            except BaseException:
                os.close(fd)
                raise
            try:
                record = self._read_record(rel, meta_file)
            except BaseException:
                raw.close()
                raise
        return raw, record

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        rel, data_file, meta_file = self._resolve(path)
        if os.path.isdir(data_file):
            raise ConflictError(f"Cannot write {rel!r} in datastore {self.name!r}: it is a folder")
        what = f"Writing {rel!r} to datastore {self.name!r}"
        with disk_full_named(what, self.root):
            fd, temp = self._make_temp(rel, data_file)
        writer = _HashingWriter(io.FileIO(fd, "wb", closefd=True), what, self.root)
        try:
            yield cast(IO[bytes], writer)
            record = _Record(sha256=writer.hash.hexdigest(), size=writer.size, modified=time.time())
            unsynced = None if writer.closed else writer.fileno()
            with disk_full_named(what, self.root):  # the object's bytes and the sidecar
                self._commit(path, rel, temp, data_file, meta_file, record, unsynced)
            writer.release()
            writer.committed = ObjectInfo(path=rel, size=record.size, sha256=record.sha256, modified=record.modified)
        except BaseException:
            writer.release()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def _upload_one(self, source: Path, target: str, advance: Callable[[int], None]) -> ObjectInfo:
        # The record just committed, rather than reading the sidecar back (a lock, two link checks
        # and a JSON parse per file).
        with open(source, "rb") as src, self.open_write(target) as dst:
            while chunk := src.read(CHUNK_SIZE):
                dst.write(chunk)
                advance(len(chunk))
        committed = cast(_HashingWriter, dst).committed
        assert committed is not None  # open_write returned without raising: it committed
        return committed

    def info(self, path: str) -> ObjectInfo:
        rel, data_file, meta_file = self._resolve(path)
        with self._locked(exclusive=False):
            record = self._info_unlocked(rel, data_file, meta_file)
        return ObjectInfo(path=rel, size=record.size, sha256=record.sha256, modified=record.modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        rel, data_file, _ = self._resolve(prefix, allow_empty=True)  # eager: bad prefixes fail here
        return self._iter_objects(rel, data_file)

    def delete(self, path: str) -> None:
        _, data_file, meta_file = self._resolve(path)
        meta_folder = meta_file[: -len(_SIDECAR_SUFFIX)]
        with self._locked(exclusive=True):
            mode = _lstat_mode(data_file)
            if mode is not None and stat.S_ISDIR(mode):
                shutil.rmtree(data_file)  # never follows links; in-flight temp files go too
                shutil.rmtree(meta_folder, ignore_errors=True)
            else:
                if mode is not None:
                    os.unlink(data_file)
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.unlink(meta_file)  # also clears a sidecar orphaned by a crash
            # Folders exist only to hold objects, as in a blob store: drop the emptied ones.
            _prune_empty_parents(os.path.dirname(data_file), self._data)
            _prune_empty_parents(os.path.dirname(meta_file), self._meta)

    # ------------------------------------------------------------------ helpers
    def _info_unlocked(self, rel: str, data_file: str, meta_file: str) -> _Record:
        mode = _lstat_mode(data_file)
        if mode is None or not stat.S_ISREG(mode):
            raise self._not_found(rel)
        return self._read_record(rel, meta_file)

    def _iter_objects(self, rel: str, data_file: str) -> Iterator[ObjectInfo]:
        mode = _lstat_mode(data_file)
        if mode is None:
            return
        if stat.S_ISREG(mode):
            paths = [rel]
        elif stat.S_ISDIR(mode):
            paths = []
            for folder, dirs, files in os.walk(data_file):  # does not descend into linked folders
                dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
                below = os.path.relpath(folder, self._data).replace(os.sep, "/")
                for file in files:
                    if file.startswith(TEMP_PREFIX) or os.path.islink(os.path.join(folder, file)):
                        continue
                    paths.append(file if below == "." else f"{below}/{file}")
        else:
            return
        for object_path in sorted(paths):
            try:
                yield self.info(object_path)
            except ArtifactNotFoundError:
                continue  # deleted while we were listing

    def _make_temp(self, rel: str, data_file: str) -> tuple[int, str]:
        folder = os.path.dirname(data_file)
        for attempt in range(3):
            try:
                os.makedirs(folder, exist_ok=True)
                self._check_no_links(rel, folder)
                return create_temp_file(folder)
            except (FileExistsError, NotADirectoryError) as exc:
                raise self._folder_conflict(rel, folder, self._data) from exc
            except FileNotFoundError:
                if attempt == 2:  # a concurrent delete keeps pruning the folder
                    raise
        raise AssertionError("unreachable")

    def _folder_conflict(self, rel: str, folder: str, top: str) -> ConflictError:
        clash = folder
        while clash != top and not os.path.isfile(clash):
            clash = os.path.dirname(clash)
        name = os.path.relpath(clash, top).replace(os.sep, "/")
        return ConflictError(
            f"Cannot write {rel!r} in datastore {self.name!r}: {name!r} is an object, not a folder"
        )

    def _commit(
        self, path: str, rel: str, temp: str, data_file: str, meta_file: str, record: _Record, unsynced: int | None
    ) -> None:
        """Publish the temporary file ``temp`` as the object, with its sidecar; ``unsynced`` is
        the temporary file's descriptor when its bytes still need an fsync."""
        body = json.dumps({"sha256": record.sha256, "size": record.size, "modified": record.modified})
        with self._locked(exclusive=True):
            meta_folder = os.path.dirname(meta_file)
            try:
                os.makedirs(meta_folder, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise self._folder_conflict(rel, meta_folder, self._meta) from exc
            # Links could have been planted while the bytes were streaming in.
            self._check_no_links(path, data_file)
            self._check_no_links(path, meta_file)
            if os.path.isdir(data_file):
                raise ConflictError(f"Cannot write {rel!r} in datastore {self.name!r}: it is a folder")
            fd, meta_temp = create_temp_file(meta_folder)
            try:
                with open(fd, "w", encoding="utf-8") as f:
                    f.write(body)
                    f.flush()
                    _fsync_together(f.fileno(), unsynced)
                os.replace(meta_temp, meta_file)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(meta_temp)
                raise
            os.replace(temp, data_file)
            _fsync_folder(os.path.dirname(data_file))


def _lstat_mode(path: str) -> int | None:
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _prune_empty_parents(folder: str, top: str) -> None:
    while folder != top and folder.startswith(top + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or already gone with its parent): stop
        folder = os.path.dirname(folder)


def _fsync_together(fd: int, other: int | None) -> None:
    """fsync ``fd`` and ``other`` (if given), both done when this returns.

    The two run at the same time, one in a short-lived thread: a journaling filesystem (ext4,
    XFS) then commits both in one journal transaction, where two fsyncs in a row cost two (0.7
    ms against 2.7-8 ms for two small new files here, under load). Durability is unchanged:
    both files' bytes are on disk before either rename publishes them, as with sequential
    fsyncs. A plain thread rather than a pool: nothing to go stale across a fork.
    """
    if other is None:
        os.fsync(fd)
        return
    failed: list[BaseException] = []

    def sync_other() -> None:
        try:
            os.fsync(other)
        except BaseException as exc:  # re-raised in the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=sync_other, name="aml-fsync", daemon=True)
    thread.start()
    try:
        os.fsync(fd)
    finally:
        thread.join()
    if failed:
        raise failed[0]


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); harmless to skip where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | _O_CLOEXEC)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)
