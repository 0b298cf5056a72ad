"""Local-file plumbing shared by the datastores and snapshots: temp files and atomic publishing."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator

from airflow_aml.exceptions import AlreadyExistsError, StorageFullError

TEMP_PREFIX = ".aml-tmp-"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def create_temp_file(folder: str | os.PathLike[str], prefix: str = TEMP_PREFIX) -> tuple[int, str]:
    """A new, exclusively created file in ``folder``: (fd, path).

    Unlike ``tempfile.mkstemp`` the mode is 0666 minus the umask, so that the file keeps the
    permissions a normally created file would have once it is renamed into place.
    """
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(8)}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"Could not create a temporary file in {os.fspath(folder)!r}")


def publish_file(temp: str, target: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Rename ``temp`` to ``target`` atomically; with ``overwrite=False`` never replace a file.

    Without overwrite a hard link is used: it fails if ``target`` exists, atomically, where a
    check-then-rename would race with another writer.
    """
    if overwrite:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)
    except FileExistsError:
        raise AlreadyExistsError(
            f"File {os.fspath(target)!r} already exists; pass overwrite=True to replace it"
        ) from None
    except OSError:  # filesystems without hard links: best effort
        if os.path.lexists(target):
            raise AlreadyExistsError(
                f"File {os.fspath(target)!r} already exists; pass overwrite=True to replace it"
            ) from None
        os.replace(temp, target)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _free(folder: str | os.PathLike[str]) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MiB"


@contextlib.contextmanager
def disk_full_named(what: str, folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a bare ``OSError: [Errno 28] No space left on device`` raised inside into a
    StorageFullError that says ``what`` was being written and where (with the space left), so
    that a task log points at the disk to clean, not at a line of our code."""
    try:
        yield
    except StorageFullError:
        raise
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        reason = "no space left" if exc.errno == errno.ENOSPC else "over the disk quota"
        error = StorageFullError(f"{what}: {reason} on the device of {os.fspath(folder)!r} ({_free(folder)} free)")
        error.errno = exc.errno  # still tells ENOSPC from EDQUOT to code that looks
        raise error from exc
