"""The datastore interface: where run outputs, snapshots, logs and models are stored.

Paths are POSIX-style and relative to the datastore root (``runs/<id>/outputs/model.pkl``). Every
implementation must:
- refuse paths that escape the root (``..``, percent-encoded ``..``, absolute paths, symlinks)
  with PathEscapeError, before touching anything;
- write atomically (a reader sees the old object or the new one, never half of one);
- record each object's SHA-256 and verify it on read (IntegrityError on mismatch).
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airflow_aml.datastores._files import create_temp_file, disk_full_named, publish_file
from airflow_aml.datastores.paths import join_path, normalize_path
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ArtifactNotFoundError,
    DatastoreError,
    ValidationError,
)
from airflow_aml.hashing import CHUNK_SIZE
from airflow_aml.progress import transfer_progress


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int
    sha256: str
    modified: float  # epoch seconds


class AbstractDatastore(abc.ABC):
    """A named bucket of files. ``name`` is the datastore's name in its workspace."""

    name: str

    # -- core (abstract): every backend implements these
    @abc.abstractmethod
    def open_read(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A binary stream; the SHA-256 is checked when the stream reaches its end."""

    @abc.abstractmethod
    def open_write(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A binary stream; the object appears (atomically) when the context exits cleanly."""

    @abc.abstractmethod
    def info(self, path: str) -> ObjectInfo:
        """ArtifactNotFoundError when absent."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose path starts with the folder ``prefix`` (recursive), sorted by path."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete one object or, for a folder prefix, everything below it. Absent: no error."""

    # -- conveniences (concrete), in terms of the core
    def exists(self, path: str) -> bool:
        """Whether an object is stored at ``path`` (a folder prefix is not an object)."""
        try:
            self.info(path)
        except ArtifactNotFoundError:
            return False
        return True

    def upload_file(self, src: str | Path, target_path: str, *, overwrite: bool = True,
                    show_progress: bool = False) -> ObjectInfo:
        """Store the local file ``src`` as the object ``target_path``."""
        source = Path(src)
        if not source.is_file():
            raise ValidationError(f"Cannot upload {str(source)!r}: it is not a file")
        target = normalize_path(target_path)
        if not overwrite:
            self._refuse_existing_objects([target])
        with transfer_progress(f"Uploading {source.name}", source.stat().st_size, show_progress) as advance:
            return self._upload_one(source, target, advance)

    def download_file(self, path: str, target: str | Path, *, overwrite: bool = True,
                      show_progress: bool = False) -> Path:
        """Copy the object ``path`` to the local file ``target``, verified and renamed into place.

        A download that fails (e.g. IntegrityError) leaves no file behind and keeps an existing
        ``target`` untouched.
        """
        destination = Path(target)
        if destination.is_dir():
            raise ValidationError(
                f"Cannot download {path!r} to {str(destination)!r}: it is a folder; give the file's path"
            )
        if not overwrite and os.path.lexists(destination):
            raise AlreadyExistsError(
                f"File {str(destination)!r} already exists; pass overwrite=True to replace it"
            )
        size = self.info(path).size  # ArtifactNotFoundError before any local file is created
        with transfer_progress(f"Downloading {destination.name}", size, show_progress) as advance:
            return self._download_one(path, destination, overwrite, advance)

    def upload(self, src_dir: str | Path, target_path: str = "", *, overwrite: bool = True,
               show_progress: bool = True) -> list[ObjectInfo]:
        """Upload a folder (recursively) or a single file below ``target_path`` (Azure ML SDK).

        Relative paths below ``src_dir`` are kept. Every target path is validated (and, without
        ``overwrite``, checked for existing objects) before the first byte is written. Links to
        files inside ``src_dir`` are uploaded as files; links leading outside it are skipped.
        """
        source = Path(src_dir)
        if source.is_file():
            target = join_path(target_path, source.name)
            return [self.upload_file(source, target, overwrite=overwrite, show_progress=show_progress)]
        if not source.is_dir():
            raise ValidationError(f"Cannot upload {str(source)!r}: no such file or folder")
        plan = [(join_path(target_path, rel), file) for rel, file in _local_files(source)]
        if not overwrite:
            self._refuse_existing_objects([target for target, _ in plan])
        total = sum(file.stat().st_size for _, file in plan)
        description = f"Uploading {len(plan)} files to {self.name}"
        with transfer_progress(description, total, show_progress) as advance:
            return [self._upload_one(file, target, advance) for target, file in plan]

    def download(self, target_path: str | Path, prefix: str = "", *, overwrite: bool = True,
                 show_progress: bool = True) -> list[Path]:
        """Download every object below ``prefix`` into ``target_path``, keeping relative paths.

        Paths are kept relative to ``prefix`` (``prefix="runs/1"`` puts ``runs/1/outputs/m.pkl`` at
        ``<target_path>/outputs/m.pkl``); a prefix naming one object downloads it by its file name.
        Without ``overwrite``, an existing local file is reported before anything is downloaded.
        """
        folder = Path(target_path)
        base = normalize_path(prefix, allow_empty=True)
        plan: list[tuple[ObjectInfo, Path]] = []
        for obj in self.list(base):
            if obj.path == base:
                rel = obj.path.rsplit("/", 1)[-1]
            elif not base:
                rel = obj.path
            elif obj.path.startswith(base + "/"):
                rel = obj.path[len(base) + 1:]
            else:
                raise DatastoreError(
                    f"Datastore {self.name!r} listed {obj.path!r}, which is not below {base!r}"
                )
            # Re-checked: a backend's listing must never name a local file outside the folder.
            plan.append((obj, folder.joinpath(*normalize_path(rel).split("/"))))
        if not overwrite:
            existing = [str(local) for _, local in plan if os.path.lexists(local)]
            if existing:
                more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
                raise AlreadyExistsError(
                    f"File {existing[0]!r}{more} already exists; pass overwrite=True to replace it"
                )
        total = sum(obj.size for obj, _ in plan)
        description = f"Downloading {len(plan)} files from {self.name}"
        with transfer_progress(description, total, show_progress) as advance:
            return [self._download_one(obj.path, local, overwrite, advance) for obj, local in plan]

    def read_bytes(self, path: str) -> bytes:
        """The whole object, verified against its recorded SHA-256."""
        with self.open_read(path) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> ObjectInfo:
        with self.open_write(path) as f:
            f.write(data)
        return self.info(path)

    # -- helpers of the conveniences
    def _refuse_existing_objects(self, paths: list[str]) -> None:
        for path in paths:
            if self.exists(path):
                raise AlreadyExistsError(
                    f"Object {path!r} already exists in datastore {self.name!r}; "
                    "pass overwrite=True to replace it"
                )

    def _upload_one(self, source: Path, target: str, advance: Callable[[int], None]) -> ObjectInfo:
        with open(source, "rb") as src, self.open_write(target) as dst:
            while chunk := src.read(CHUNK_SIZE):
                dst.write(chunk)
                advance(len(chunk))
        return self.info(target)

    def _download_one(self, path: str, destination: Path, overwrite: bool,
                      advance: Callable[[int], None]) -> Path:
        what = f"Downloading {path!r} from datastore {self.name!r} to {str(destination)!r}"
        with disk_full_named(what, destination.parent):
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = create_temp_file(destination.parent)
        try:
            with disk_full_named(what, destination.parent), open(fd, "wb") as dst, self.open_read(path) as src:
                # Read to the end: that is when the stream checks the SHA-256.
                while chunk := src.read(CHUNK_SIZE):
                    dst.write(chunk)
                    advance(len(chunk))
                dst.flush()
                os.fsync(dst.fileno())
            publish_file(temp, destination, overwrite=overwrite)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return destination


def _local_files(folder: Path) -> list[tuple[str, Path]]:
    """(POSIX path relative to ``folder``, file) for every file below ``folder``, sorted.

    Links are not followed into folders (no cycles); a link to a file is kept only when its
    target lies inside ``folder``, so an upload never carries files from elsewhere on the disk.
    """
    root = os.path.realpath(folder)
    found: list[tuple[str, Path]] = []
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            file = Path(current, name)
            if file.is_symlink():
                real = os.path.realpath(file)
                if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
                    continue
            elif not file.is_file():
                continue  # sockets, FIFOs, devices
            found.append((file.relative_to(folder).as_posix(), file))
    return sorted(found)
