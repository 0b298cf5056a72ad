"""Engines for the two supported backends: SQLite (one file) and PostgreSQL (psycopg 3).

SQLite is shared by several processes (scheduler, workers, the user's notebook), so every
connection runs in WAL mode with a busy timeout, and writes take the write lock up front with
``BEGIN IMMEDIATE``: a deferred transaction that reads first and writes later can fail with
"database is locked" without ever waiting, because SQLite cannot upgrade its read snapshot.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from airflow_aml.exceptions import ValidationError

# Execution option that marks a write transaction; the SQLite "begin" hook reads it.
WRITE_OPTION = "aml_write"

SQLITE_BUSY_TIMEOUT_MS = 30_000

_POSTGRES_ALIASES = {"postgres", "postgresql"}


def normalize_uri(uri: str) -> URL:
    """Parse ``uri``; bare ``postgres://`` / ``postgresql://`` get the psycopg 3 driver."""
    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise ValidationError(f"Invalid metadata store URI {uri!r}: {exc}") from exc
    if url.drivername in _POSTGRES_ALIASES:
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValidationError(f"Unsupported metadata store URI {uri!r}: use sqlite:/// or postgresql://")
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        # Every pooled connection would get its own empty database.
        raise ValidationError(f"In-memory SQLite is not supported as a metadata store ({uri!r}); give a file path")
    return url


def display_uri(url: URL) -> str:
    """The URI for messages, password masked."""
    return url.render_as_string(hide_password=True)


def create_store_engine(url: URL) -> Engine:
    sqlite = url.get_backend_name() == "sqlite"
    engine = _sqlite_engine(url) if sqlite else create_engine(url, pool_pre_ping=True)
    _forget_pool_after_fork(engine)
    return engine


def _forget_pool_after_fork(engine: Engine) -> None:
    """A forked child (Airflow's LocalExecutor forks) must not reuse the parent's pooled
    connections: two processes on one SQLite handle or PostgreSQL socket corrupt each other.
    ``dispose(close=False)`` drops them in the child without closing the parent's."""
    ref = weakref.ref(engine)  # the hook cannot be unregistered: do not keep the engine alive

    def reset() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=reset)


def _sqlite_engine(url: URL) -> Engine:
    assert url.database is not None
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module (it would emit its own deferred
    # BEGIN before DML only); SQLAlchemy's "begin" event emits ours instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
