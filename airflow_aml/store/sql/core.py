"""What every part of the SQL store shares: the engine, transactions and lookups of parents."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from airflow_aml.exceptions import DuplicateAttemptError, RunNotFoundError, WorkspaceNotFoundError
from airflow_aml.names import available
from airflow_aml.store.sql.engine import WRITE_OPTION
from airflow_aml.store.sql.tables import ExperimentRow, RunRow, WorkspaceRow
from airflow_aml.store.sql.transaction import run_in_session

T = TypeVar("T")

# Stay far below SQLite's bound-parameter limit for IN (...) lists.
IN_CHUNK = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlCore:
    """Base of the store's parts (workspaces, runs, ...), which are mixed into ``SqlStore``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._dialect = engine.dialect.name

    # ----------------------------------------------------------------- transactions
    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a write transaction (SQLite: BEGIN IMMEDIATE), retried while busy."""
        return run_in_session(self._write_engine, fn)

    def _read(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a read transaction: one consistent snapshot, no write lock."""
        return run_in_session(self._engine, fn)

    def _insert(self, entity: Any) -> Any:
        """INSERT with the dialect's ON CONFLICT support (both backends have it)."""
        if self._dialect == "postgresql":
            return postgresql.insert(entity)
        return sqlite.insert(entity)

    def _bytewise(self, column: ColumnElement[str]) -> ColumnElement[str]:
        """``column`` ordered by code point, as SQLite does, not by PostgreSQL's locale."""
        return column.collate("C") if self._dialect == "postgresql" else column

    # ----------------------------------------------------------------- parents
    def _ensure_experiment(self, session: Session, workspace: str, name: str) -> ExperimentRow:
        self._add_experiment_if_missing(session, workspace, name)
        return session.scalars(
            select(ExperimentRow).where(ExperimentRow.workspace == workspace, ExperimentRow.name == name)
        ).one()

    def _add_experiment_if_missing(self, session: Session, workspace: str, name: str) -> None:
        # ON CONFLICT DO NOTHING instead of insert-and-catch: on PostgreSQL a failed INSERT would
        # abort the caller's whole transaction (create_run runs this inside its own). Parameters
        # apart from the statement, so its compiled form is cached.
        stmt = self._insert(ExperimentRow.__table__).on_conflict_do_nothing(index_elements=["workspace", "name"])
        session.connection().execute(stmt, {"workspace": workspace, "name": name, "created_at": utcnow()})

    def _workspace_row(self, session: Session, name: str, *, lock: bool = False) -> WorkspaceRow:
        """The workspace row; ``lock`` serialises writers of the workspace's shared state
        (default datastore, owners) on PostgreSQL. SQLite writers are serialised anyway."""
        stmt = select(WorkspaceRow).where(WorkspaceRow.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).one_or_none()
        if row is None:
            raise self._workspace_not_found(session, name)
        return row

    def _require_workspace(self, session: Session, name: str) -> None:
        exists = session.scalar(select(WorkspaceRow.name).where(WorkspaceRow.name == name))
        if exists is None:
            raise self._workspace_not_found(session, name)

    @staticmethod
    def _refuse_duplicate_attempt(
        session: Session, row: Any, workspace: str, key: str | None, attempt: int | None, what: str
    ) -> None:
        """DuplicateAttemptError when ``row``'s table holds this attempt of ``key`` already. Checked
        before the insert (SQLite serialises writers, so this sees the winner); on PostgreSQL a
        racing insert is refused by the unique index instead (``_is_duplicate_attempt``)."""
        if key is None or attempt is None:
            return
        taken = session.scalar(
            select(func.count()).select_from(row).where(
                row.workspace == workspace, row.idempotency_key == key, row.idempotency_attempt == attempt
            )
        )
        if taken:
            raise DuplicateAttemptError(f"{what}: attempt {attempt} of idempotency key '{key}' exists already")

    @staticmethod
    def _is_duplicate_attempt(exc: Exception) -> bool:
        """Whether an IntegrityError is the per-attempt unique index's (its name or columns)."""
        return "idempotency_attempt" in str(getattr(exc, "orig", exc))

    @staticmethod
    def _workspace_not_found(session: Session, name: str) -> WorkspaceNotFoundError:
        names = session.scalars(select(WorkspaceRow.name))
        hint = available(names, label="existing workspaces", none="no workspace exists yet")
        return WorkspaceNotFoundError(f"Workspace '{name}' not found{hint}")

    def _run_row(self, session: Session, run_id: str, *, lock: bool = False) -> RunRow:
        stmt = select(RunRow).where(RunRow.run_id == run_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).one_or_none()
        if row is None:
            raise RunNotFoundError(f"Run '{run_id}' not found")
        return row

    def _require_run(self, session: Session, run_id: str) -> None:
        if session.scalar(select(RunRow.run_id).where(RunRow.run_id == run_id)) is None:
            raise RunNotFoundError(f"Run '{run_id}' not found")
