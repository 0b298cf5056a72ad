"""SHA-256 of files, read in chunks so that multi-GB models never sit in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from airflow_aml.exceptions import IntegrityError

CHUNK_SIZE = 1024 * 1024  # one read/write unit for every streaming copy in airflow-aml


def sha256_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """One digest over ``(relative path, file SHA-256)`` pairs, in path order: the identity of a
    registered model version's files (equal trees, equal digests)."""
    digest = hashlib.sha256()
    for rel, sha in sorted(entries):
        digest.update(f"{rel}\0{sha}\n".encode())
    return digest.hexdigest()


def verify_tree(root: Path, files: Sequence[Path], expected: str | None, what: str) -> None:
    """Check freshly downloaded ``files`` below ``root`` against the tree digest recorded in the
    metadata store when they were registered.

    The datastore checks each object against its own sidecar; this catches what that cannot: an
    object rewritten together with its sidecar, or a file added or removed. On a mismatch the
    files are removed (nothing half-trusted stays behind) and IntegrityError names ``what``.
    """
    if expected is None:  # registered before digests were recorded
        return
    actual = tree_sha256((Path(f).relative_to(root).as_posix(), sha256_file(f)) for f in files)
    if actual != expected:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise IntegrityError(
            f"{what}: the files downloaded have tree SHA-256 {actual}, not the {expected} recorded when it "
            "was registered; its copy in the datastore was changed since (the downloaded files were removed)"
        )
