"""SQLite specifics: pragmas, write transactions, waiting and retrying on a locked database."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from airflow_aml.exceptions import StoreError, WorkspaceNotFoundError
from airflow_aml.store.sql import SqlStore, transaction
from airflow_aml.store.sql.transaction import is_retryable, with_retries
from tests.unit.store.helpers import WS, new_workspace, scalar


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'aml.db'}")
    yield store
    store.close()


def test_pragmas(sqlite_store: SqlStore) -> None:
    with sqlite_store._engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 30_000


def test_writes_begin_immediate_and_reads_do_not(sqlite_store: SqlStore) -> None:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("BEGIN"):
            statements.append(statement)

    event.listen(sqlite_store._engine, "before_cursor_execute", record)
    try:
        new_workspace(sqlite_store)
        assert statements == ["BEGIN IMMEDIATE"]
        statements.clear()
        sqlite_store.get_workspace(WS)
        sqlite_store.list_workspaces()
        assert statements == ["BEGIN", "BEGIN"]
    finally:
        event.remove(sqlite_store._engine, "before_cursor_execute", record)


def test_foreign_keys_are_enforced(sqlite_store: SqlStore) -> None:
    with pytest.raises(IntegrityError), sqlite_store._write_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO experiments (workspace, name, created_at) VALUES ('no-such-ws', 'e', '2024-01-01')"
        )


def test_naive_sqlite_datetimes_come_back_as_utc(sqlite_store: SqlStore) -> None:
    workspace = new_workspace(sqlite_store)
    with sqlite_store._engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT created_at FROM workspaces").scalar()
    assert isinstance(stored, str) and "+" not in stored  # naive UTC text on disk
    record = sqlite_store.get_workspace(workspace)
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_a_writer_waits_for_a_lock_held_elsewhere(sqlite_store: SqlStore, tmp_path: Path) -> None:
    """Another process holding the write lock for a while does not make our write fail."""
    new_workspace(sqlite_store)
    run_id = sqlite_store.create_run(workspace=WS, experiment="e", submitted_by="a").run_id
    holder = sqlite3.connect(tmp_path / "aml.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        time.sleep(1.0)
        holder.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    started = time.monotonic()
    sqlite_store.log_batch(run_id, [scalar("a", 1.0, 0)])
    assert released.is_set() and time.monotonic() - started >= 0.9
    holder.close()
    assert len(sqlite_store.get_metrics(run_id)) == 1


def _locked() -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))


def test_retry_on_locked_then_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction, "_BACKOFF_START_S", 0.001)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _locked()
        return "done"

    assert with_retries(flaky) == "done"
    assert len(calls) == 4


def test_retry_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction, "_BACKOFF_START_S", 0.001)
    monkeypatch.setattr(transaction, "_BACKOFF_CAP_S", 0.001)
    calls = []

    def always_locked() -> None:
        calls.append(1)
        raise _locked()

    with pytest.raises(StoreError, match="failed after 12 attempts: .*database is locked"):
        with_retries(always_locked)
    assert len(calls) == transaction.MAX_ATTEMPTS


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))

    with pytest.raises(StoreError, match="no such table"):
        with_retries(broken)
    assert len(calls) == 1

    def not_found() -> None:
        raise WorkspaceNotFoundError("Workspace 'x' not found")

    with pytest.raises(WorkspaceNotFoundError):
        with_retries(not_found)


def test_is_retryable_on_postgres_codes() -> None:
    class PgError(Exception):
        sqlstate = "40P01"

    assert is_retryable(OperationalError("x", {}, PgError()))
    assert not is_retryable(OperationalError("x", {}, ValueError()))
    assert not is_retryable(ValueError("database is locked"))


def test_retry_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction, "_BACKOFF_START_S", 0.001)
    monkeypatch.setattr(transaction, "MAX_TOTAL_S", 0.0)
    calls = []

    def always_locked() -> None:
        calls.append(1)
        raise _locked()

    with pytest.raises(StoreError, match="failed after 1 attempts"):
        with_retries(always_locked)
    assert len(calls) == 1


def _child_writes(store: SqlStore, run_id: str) -> None:
    store.log_batch(run_id, [scalar("from-child", 1.0, 0)])


def test_a_forked_child_gets_its_own_connections(sqlite_store: SqlStore) -> None:
    new_workspace(sqlite_store)
    run_id = sqlite_store.create_run(workspace=WS, experiment="e", submitted_by="a").run_id
    sqlite_store.get_run(run_id)  # the pool now holds a connection the child must not use
    child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(sqlite_store, run_id))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    sqlite_store.log_batch(run_id, [scalar("from-parent", 1.0, 0)])
    assert [m.name for m in sqlite_store.get_metrics(run_id)] == ["from-child", "from-parent"]
