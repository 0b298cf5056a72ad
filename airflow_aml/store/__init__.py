"""Metadata stores, chosen by URI scheme.

``get_store("sqlite:////path/aml.db")`` or ``get_store("postgresql+psycopg://...")``. A new backend
is one builder registered with ``register_store_builder``; an unknown scheme lists the valid ones.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from airflow_aml.config import redact
from airflow_aml.exceptions import ValidationError
from airflow_aml.store.base import AbstractStore

__all__ = ["AbstractStore", "get_store", "register_store_builder"]


def _by_name(path: str) -> Callable[[str], AbstractStore]:
    """A builder that imports ``module:Class`` when first used. The SQL store is named, not
    imported: SQLAlchemy and the migrations load only for SQL URIs, and what imports this registry
    (the runtime inside a container) does not depend on the SQL layer."""
    module, _, name = path.partition(":")

    def build(uri: str) -> AbstractStore:
        store_class: type[AbstractStore] = getattr(importlib.import_module(module), name)
        return store_class(uri)  # type: ignore[call-arg]

    return build


_SQL = _by_name("airflow_aml.store.sql.store:SqlStore")
_HTTP = _by_name("airflow_aml.store.http.store:HttpStore")  # the workspace service
_BUILDERS: dict[str, Callable[[str], AbstractStore]] = {
    "sqlite": _SQL,
    "postgresql": _SQL,
    "postgres": _SQL,
    "http": _HTTP,
    "https": _HTTP,
}
_CACHE: dict[str, AbstractStore] = {}
_LOCK = threading.Lock()


def register_store_builder(scheme: str, builder: Callable[[str], AbstractStore]) -> None:
    _BUILDERS[scheme] = builder


def get_store(uri: str, *, cached: bool = True) -> AbstractStore:
    """The store for ``uri``; one instance (one connection pool) per URI and process."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in _BUILDERS:
        valid = ", ".join(sorted(_BUILDERS))
        raise ValidationError(f"Unknown metadata store URI scheme {scheme!r} in {redact(uri)!r}; valid: {valid}")
    if not cached:
        return _BUILDERS[scheme](uri)
    key = uri
    if scheme in ("http", "https"):
        # A service URI without a token acts as $AML_RUN_TOKEN / $AML_TOKEN: one store per token, or
        # a process whose token changes (a second CLI invocation in-process) would go on as the first.
        from airflow_aml.store.http.client import token_from_environment

        key = f"{uri}\n{token_from_environment() or ''}"
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _BUILDERS[scheme](uri)
        return _CACHE[key]
