from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_aml.datastores as datastores
from airflow_aml.datastores import (
    AbstractDatastore,
    LocalDatastore,
    ObjectInfo,
    build_datastore,
    datastore_kinds,
    register_datastore_kind,
)
from airflow_aml.exceptions import ValidationError


def test_builds_local_without_touching_the_disk(tmp_path: Path) -> None:
    root = tmp_path / "not-yet"
    ds = build_datastore("workspaceblobstore", "local", {"root": str(root)})
    assert isinstance(ds, LocalDatastore)
    assert ds.name == "workspaceblobstore"
    assert ds.root == root.resolve()
    assert not root.exists()  # building validates; it writes nothing
    assert build_datastore("p", "local", {"root": root}).root == root.resolve()  # a Path is fine too


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValidationError) as excinfo:
        build_datastore("ds", "s3", {})
    message = str(excinfo.value)
    assert "'s3'" in message and "'ds'" in message and "local" in message


@pytest.mark.parametrize("config", [{}, {"root": ""}, {"root": 3}])
def test_local_needs_a_root(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="root"):
        build_datastore("ds", "local", config)


def test_register_a_new_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datastores, "_BUILDERS", dict(datastores._BUILDERS))

    class Fake(AbstractDatastore):
        def __init__(self, name: str, config: dict[str, Any]) -> None:
            self.name = name
            self.config = config

        def open_read(self, path: str):  # type: ignore[override]
            raise NotImplementedError

        def open_write(self, path: str):  # type: ignore[override]
            raise NotImplementedError

        def info(self, path: str) -> ObjectInfo:
            raise NotImplementedError

        def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
            return iter(())

        def delete(self, path: str) -> None:
            return None

    register_datastore_kind("azure_blob", lambda name, config: Fake(name, dict(config)))
    ds = build_datastore("blob", "azure_blob", {"container": "c"})
    assert isinstance(ds, Fake) and ds.config == {"container": "c"}
    assert datastore_kinds() == ["azure_blob", "local"]
