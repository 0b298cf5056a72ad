"""Run one unit of work in one transaction, retrying when the database is momentarily busy.

The whole unit is retried (never a single statement): after a rollback nothing of the failed
attempt is left, so running the function again is safe.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from airflow_aml.exceptions import AmlError, StoreError

T = TypeVar("T")

MAX_ATTEMPTS = 12
# Each SQLite attempt already waits up to its busy_timeout, so also bound the total time.
MAX_TOTAL_S = 120.0
_BACKOFF_START_S = 0.02
_BACKOFF_CAP_S = 1.0

# SQLSTATEs after which PostgreSQL expects the client to run the transaction again.
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_SQLITE_RETRYABLE = ("database is locked", "database table is locked", "database is busy", "busy")


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_RETRYABLE:
        return True
    if type(orig).__module__ == "sqlite3" and type(orig).__name__ == "OperationalError":
        message = str(orig).lower()
        return any(marker in message for marker in _SQLITE_RETRYABLE)
    return False


def with_retries(fn: Callable[[], T], *, what: str = "metadata store transaction") -> T:
    """Call ``fn`` until it does not fail with a busy/locked/deadlock error (bounded).

    Other database errors become ``StoreError``; airflow-aml errors pass through unchanged.
    """
    delay = _BACKOFF_START_S
    deadline = time.monotonic() + MAX_TOTAL_S
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except AmlError:
            raise
        except SQLAlchemyError as exc:
            if not is_retryable(exc):
                raise StoreError(f"{what} failed: {exc}") from exc
            if attempt == MAX_ATTEMPTS or time.monotonic() >= deadline:
                raise StoreError(f"{what} failed after {attempt} attempts: {exc}") from exc
            # Jitter so that writers that collided do not collide again in lock-step.
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BACKOFF_CAP_S)
    raise AssertionError("unreachable")


def run_in_session(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Run ``fn(session)`` in one transaction: committed when it returns, rolled back if it raises."""

    def attempt() -> T:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            return fn(session)

    return with_retries(attempt)
