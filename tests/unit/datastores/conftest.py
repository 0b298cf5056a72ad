from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.datastores import LocalDatastore


@pytest.fixture
def ds(tmp_path: Path) -> LocalDatastore:
    return LocalDatastore("store", tmp_path / "root")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the datastore root, holding a file that must never be read or written."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"top secret")
    return folder

