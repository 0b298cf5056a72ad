"""Metadata stores, chosen by URI scheme.

``get_store("sqlite:////path/aml.db")`` or ``get_store("postgresql+psycopg://...")``. A new backend
is one builder registered in ``_BUILDERS``; an unknown scheme lists the valid ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from airflow_aml.exceptions import ValidationError
from airflow_aml.store.base import AbstractStore

__all__ = ["AbstractStore", "get_store", "register_store_builder"]


def _build_sql(uri: str) -> AbstractStore:
    # Imported lazily: SQLAlchemy and the migrations are only loaded for SQL URIs.
    from airflow_aml.store.sql.store import SqlStore

    return SqlStore(uri)


_BUILDERS: dict[str, Callable[[str], AbstractStore]] = {
    "sqlite": _build_sql,
    "postgresql": _build_sql,
    "postgres": _build_sql,
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
        from airflow_aml.config import redact

        raise ValidationError(f"Unknown metadata store URI scheme {scheme!r} in {redact(uri)!r}; valid: {valid}")
    if not cached:
        return _BUILDERS[scheme](uri)
    with _LOCK:
        if uri not in _CACHE:
            _CACHE[uri] = _BUILDERS[scheme](uri)
        return _CACHE[uri]
