"""Datastores, chosen by kind.

``build_datastore("workspaceblobstore", "local", {"root": "/data/aml"})``. A new backend (Azure
Blob) is one module plus one ``register_datastore_kind`` line; an unknown kind lists the valid
ones. Building does no I/O, so a workspace can validate a datastore's config before storing it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from airflow_aml.datastores.base import AbstractDatastore, ObjectInfo
from airflow_aml.datastores.local import LocalDatastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import ValidationError

__all__ = [
    "SECRET_KEYS",
    "SECRET_SUFFIX",
    "AbstractDatastore",
    "DatastoreBuilder",
    "LocalDatastore",
    "ObjectInfo",
    "build_datastore",
    "datastore_kinds",
    "normalize_path",
    "register_datastore_kind",
]

# A config key ``<key>_secret`` names a workspace secret whose value the workspace passes to the
# builder as ``<key>``; the keys in SECRET_KEYS may only be given that way, so that no credential
# is ever written into a datastore record.
SECRET_SUFFIX = "_secret"
SECRET_KEYS: dict[str, tuple[str, ...]] = {"azure_blob": ("connection_string", "credential")}

DatastoreBuilder = Callable[[str, Mapping[str, Any]], AbstractDatastore]


def _build_local(name: str, config: Mapping[str, Any]) -> AbstractDatastore:
    root = config.get("root")
    if isinstance(root, os.PathLike):
        root = os.fspath(root)
    if not isinstance(root, str) or not root.strip():
        raise ValidationError(
            f"Datastore {name!r} of kind 'local' needs a 'root' folder in its config, got {root!r}"
        )
    return LocalDatastore(name, root)


def _build_azure_blob(name: str, config: Mapping[str, Any]) -> AbstractDatastore:
    # Imported here: the SDK is optional (the azure extra) and loaded only when a blob store is used.
    from airflow_aml.datastores.blob import build_blob_datastore

    return build_blob_datastore(name, dict(config))


_BUILDERS: dict[str, DatastoreBuilder] = {
    "local": _build_local,
    "azure_blob": _build_azure_blob,
}


def register_datastore_kind(kind: str, builder: DatastoreBuilder) -> None:
    """Make ``kind`` buildable; registering an existing kind replaces its builder."""
    _BUILDERS[kind] = builder


def datastore_kinds() -> list[str]:
    return sorted(_BUILDERS)


def build_datastore(name: str, kind: str, config: Mapping[str, Any]) -> AbstractDatastore:
    """A datastore object for a registered datastore; ValidationError for an unknown kind."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValidationError(
            f"Unknown datastore kind {kind!r} for datastore {name!r}; valid kinds: {', '.join(datastore_kinds())}"
        )
    return builder(name, config)
