"""SHA-256 of files, read in chunks so that multi-GB models never sit in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_SIZE = 1024 * 1024  # one read/write unit for every streaming copy in airflow-aml


def sha256_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
