"""Runs: lifecycle, tags/properties/params and search."""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from airflow_aml.entities import RunQuery, RunRecord, RunStatus
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    DuplicateAttemptError,
    NotFoundError,
    RunNotFoundError,
    ValidationError,
)
from airflow_aml.names import validate_display_name, validate_tags
from airflow_aml.store.sql.core import SqlCore, chunked, utcnow
from airflow_aml.store.sql.metric_sql import comparable_value, latest_scalar_value
from airflow_aml.store.sql.records import Attributes, empty_attributes, run_record
from airflow_aml.store.sql.run_rows import RECORD_COLUMNS, run_records
from airflow_aml.store.sql.tables import PARAM, PROPERTY, TAG, LatestMetricRow, RunAttributeRow, RunRow
from airflow_aml.store.sql.types import check_json

_CONDITION_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class RunStore(SqlCore):
    # ----------------------------------------------------------------- create / read
    def create_run(
        self,
        *,
        workspace: str,
        experiment: str,
        submitted_by: str,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        compute_target: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        display_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_attempt: int | None = None,
        status: RunStatus = RunStatus.QUEUED,
    ) -> RunRecord:
        status = RunStatus(status)
        config = check_json(dict(run_config or {}), "Run configuration")
        tags = validate_tags(tags, "Run")
        display_name = validate_display_name(display_name)
        new_id = run_id or uuid.uuid4().hex

        def tx(session: Session) -> RunRecord:
            self._require_workspace(session, workspace)
            if parent_run_id is not None:
                parent_ws = session.scalar(select(RunRow.workspace).where(RunRow.run_id == parent_run_id))
                if parent_ws != workspace:
                    raise RunNotFoundError(f"Parent run '{parent_run_id}' not found in workspace '{workspace}'")
            if run_id is not None and session.get(RunRow, new_id) is not None:
                # (A fresh uuid4 cannot be taken; were it, the insert below would refuse it.)
                raise AlreadyExistsError(f"Run '{new_id}' already exists")
            self._refuse_duplicate_attempt(
                session, RunRow, workspace, idempotency_key, idempotency_attempt, "Run"
            )
            self._add_experiment_if_missing(session, workspace, experiment)
            now = utcnow()
            values = {
                "run_id": new_id, "workspace": workspace, "experiment": experiment, "parent_run_id": parent_run_id,
                "status": status.value, "created_at": now,
                "start_time": now if status is RunStatus.RUNNING else None,
                "end_time": now if status.is_terminal else None,
                "submitted_by": submitted_by, "compute_target": compute_target, "run_config": config,
                "display_name": display_name, "error": None, "snapshot_sha256": None,
                "idempotency_key": idempotency_key,
                "idempotency_attempt": idempotency_attempt if idempotency_key else None,
                "cancel_requested": status is RunStatus.CANCEL_REQUESTED,
                # A submitted run's supervisor beats from its start; the clock runs from now, so
                # a supervisor that never starts is noticed too. Interactive runs have none.
                "heartbeat_at": now if compute_target else None,
                "last_log_seq": 0,
            }
            # Core inserts with the values as parameters (cached compiled statements), not ORM
            # objects and a unit-of-work flush: creating a run is on every tracked run's path.
            connection = session.connection()
            try:
                connection.execute(insert(RunRow.__table__), values)
            except IntegrityError as exc:  # inserted concurrently (PostgreSQL): same attempt or run_id
                if self._is_duplicate_attempt(exc):
                    raise DuplicateAttemptError(
                        f"Run: attempt {idempotency_attempt} of idempotency key '{idempotency_key}' exists already"
                    ) from exc
                raise AlreadyExistsError(f"Run '{new_id}' already exists") from exc
            attributes = empty_attributes()
            for kind, given in ((TAG, tags), (PROPERTY, properties)):
                attributes[kind].update(given or {})
            rows = [{"run_id": new_id, "kind": kind, "key": key, "value": value}
                    for kind, given in attributes.items() for key, value in given.items()]
            if rows:
                connection.execute(insert(RunAttributeRow.__table__), rows)
            return run_record(SimpleNamespace(**values), attributes)  # type: ignore[arg-type]

        return self._write(tx)

    def get_run(self, run_id: str) -> RunRecord:
        return self._read(lambda session: self._run_record(session, self._run_row(session, run_id)))

    def _run_record(self, session: Session, row: RunRow) -> RunRecord:
        return run_record(row, self._run_attributes(session, [row.run_id])[row.run_id])

    def _run_records(self, session: Session, rows: Sequence[RunRow]) -> list[RunRecord]:
        attributes = self._run_attributes(session, [row.run_id for row in rows])
        return [run_record(row, attributes[row.run_id]) for row in rows]

    def _run_attributes(self, session: Session, run_ids: Sequence[str]) -> dict[str, Attributes]:
        """Tags, properties and params of many runs in one query per chunk of ids."""
        result = {run_id: empty_attributes() for run_id in run_ids}
        for chunk in chunked(list(result)):
            # Plain column tuples, not ORM objects: building an instance costs more than the row.
            rows = session.execute(
                select(RunAttributeRow.run_id, RunAttributeRow.kind, RunAttributeRow.key, RunAttributeRow.value)
                .where(RunAttributeRow.run_id.in_(chunk))
            )
            for run_id, kind, key, value in rows:
                result[run_id][kind][key] = value
        return result

    # ----------------------------------------------------------------- lifecycle
    def update_run_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> RunRecord:
        status = RunStatus(status)
        return self._write(lambda session: self._run_record(session, self._set_status(session, run_id, status, error)))

    def _set_status(self, session: Session, run_id: str, status: RunStatus, error: str | None) -> RunRow:
        """``update_run_status`` inside the caller's transaction; returns the (locked) row."""
        row = self._run_row(session, run_id, lock=True)
        if RunStatus(row.status).is_terminal:
            return row  # final: a late writer must not resurrect a canceled run
        now = utcnow()
        # Once cancel is requested, only a terminal status replaces CancelRequested: a runner
        # reporting Running late must not hide the pending cancellation.
        if not (row.cancel_requested and not status.is_terminal):
            row.status = status.value
        if status is RunStatus.RUNNING and row.start_time is None:
            row.start_time = now
        if status.is_terminal:
            row.end_time = now
        if status is RunStatus.CANCEL_REQUESTED:
            row.cancel_requested = True
        if error is not None:
            row.error = error
        session.flush()
        return row

    def request_cancel(self, run_id: str) -> RunRecord:
        def tx(session: Session) -> RunRecord:
            row = self._run_row(session, run_id, lock=True)
            if not RunStatus(row.status).is_terminal:
                row.cancel_requested = True
                row.status = RunStatus.CANCEL_REQUESTED.value
                session.flush()
            return self._run_record(session, row)

        return self._write(tx)

    def beat_run_heartbeat(self, run_id: str) -> None:
        """The supervisor of ``run_id`` is alive: stamp the run (and its unfinished children,
        which a sweep runs in the same process). Nothing for a run that has ended."""

        def tx(session: Session) -> None:
            now = utcnow()
            self._require_run(session, run_id)
            session.execute(
                update(RunRow)
                .where(or_(RunRow.run_id == run_id, RunRow.parent_run_id == run_id))
                .where(RunRow.status.not_in([s.value for s in RunStatus if s.is_terminal]))
                .values(heartbeat_at=now)
            )

        self._write(tx)

    def find_runs_without_heartbeat(self, workspace: str, *, since: datetime) -> list[RunRecord]:
        """Unfinished top-level runs whose supervisor has not beaten since ``since`` (runs with
        no heartbeat at all, started before heartbeats or interactively, are never listed)."""

        def tx(session: Session) -> list[RunRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(
                select(RunRow).where(
                    RunRow.workspace == workspace,
                    RunRow.parent_run_id.is_(None),
                    RunRow.heartbeat_at.is_not(None),
                    RunRow.heartbeat_at < since,
                    RunRow.status.not_in([s.value for s in RunStatus if s.is_terminal]),
                ).order_by(RunRow.created_at)
            ).all()
            return self._run_records(session, rows)

        return self._read(tx)

    def set_snapshot(self, run_id: str, sha256: str) -> None:
        def tx(session: Session) -> None:
            self._run_row(session, run_id).snapshot_sha256 = sha256

        self._write(tx)

    # ----------------------------------------------------------------- attributes
    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        tags = validate_tags(tags, f"Run '{run_id}'")

        def tx(session: Session) -> None:
            self._require_run(session, run_id)
            if not tags:
                return
            session.connection().execute(
                _attribute_insert(self._dialect, upsert=True),
                [{"run_id": run_id, "kind": TAG, "key": key, "value": value} for key, value in tags.items()],
            )

        self._write(tx)

    def delete_run_tags(self, run_id: str, keys: Sequence[str]) -> None:
        wanted = set(keys)

        def tx(session: Session) -> None:
            self._require_run(session, run_id)
            if not wanted:
                return
            where = (RunAttributeRow.run_id == run_id, RunAttributeRow.kind == TAG, RunAttributeRow.key.in_(wanted))
            found = set(session.scalars(select(RunAttributeRow.key).where(*where)))
            missing = sorted(wanted - found)
            if missing:
                raise NotFoundError(f"Run '{run_id}' has no tag {', '.join(map(repr, missing))}")
            session.execute(delete(RunAttributeRow).where(*where))

        self._write(tx)

    def add_run_properties(self, run_id: str, properties: Mapping[str, str]) -> None:
        self._write(lambda session: self._add_immutable(session, run_id, PROPERTY, properties))

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        self._write(lambda session: self._add_immutable(session, run_id, PARAM, params))

    def _add_immutable(self, session: Session, run_id: str, kind: str, values: Mapping[str, str]) -> None:
        """Insert what is new, then compare: a key already stored with another value is a
        ConflictError and rolls the whole call back. Race-free: on PostgreSQL ON CONFLICT waits
        for a concurrent inserter and the re-read sees its committed value."""
        self._require_run(session, run_id)
        if not values:
            return
        connection = session.connection()
        connection.execute(
            _attribute_insert(self._dialect, upsert=False),
            [{"run_id": run_id, "kind": kind, "key": key, "value": value} for key, value in values.items()],
        )
        stored = dict(
            connection.execute(
                select(RunAttributeRow.key, RunAttributeRow.value).where(
                    RunAttributeRow.run_id == run_id,
                    RunAttributeRow.kind == kind,
                    RunAttributeRow.key.in_(list(values)),
                )
            ).all()
        )
        for key, value in values.items():
            if stored[key] != value:
                raise ConflictError(
                    f"{kind.capitalize()} '{key}' of run '{run_id}' is already {stored[key]!r} and cannot "
                    f"be changed to {value!r}: {kind}s are immutable"
                )

    # ----------------------------------------------------------------- search
    def search_runs(self, workspace: str, query: RunQuery) -> list[RunRecord]:
        if query.max_results is not None and query.max_results < 0:
            raise ValidationError(f"max_results must be >= 0, got {query.max_results}")
        if query.offset < 0:
            raise ValidationError(f"offset must be >= 0, got {query.offset}")
        top_n = query.order_by_metric is not None and query.max_results is not None
        stmt = None if top_n else self._search_statement(workspace, query)

        def tx(session: Session) -> list[RunRecord]:
            self._require_workspace(session, workspace)
            # Core, not ORM: a search returns thousands of runs and never modifies them (run_rows).
            connection = session.connection()
            rows = self._top_n_rows(connection, workspace, query) if stmt is None else connection.execute(stmt).all()
            return run_records(connection, rows)

        return self._read(tx)

    def _top_n_rows(self, connection: Connection, workspace: str, query: RunQuery) -> list[Any]:
        """The first ``max_results`` runs by a metric, in two index-ordered reads: the runs that
        have a value, walked in value order through ``ix_latest_metrics_rank`` (the scan stops
        after N matches, however many runs the experiment has), then, if fewer than N, the runs
        without one (NULL sorts last), newest first. The same order as ``_search_statement``."""
        limit, metric, offset = int(query.max_results or 0), str(query.order_by_metric), query.offset
        if limit == 0:
            return []
        latest = LatestMetricRow
        value = latest.value
        has_value = [value.is_not(None)]
        if self._dialect == "postgresql":  # NaN counts as no value (it is NULL on SQLite)
            has_value.append(value != float("nan"))
        scope = [latest.workspace == workspace]
        if query.experiment is not None:
            scope.append(latest.experiment == query.experiment)
        ranked = (
            self._filtered(workspace, query)
            .join(latest, and_(latest.run_id == RunRow.run_id, latest.name == metric))
            .where(*scope, *has_value)
            .order_by(value.desc() if query.descending else value.asc(), RunRow.created_at.desc(),
                      RunRow.run_id.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = list(connection.execute(ranked).all())
        if len(rows) < limit:
            # The page reaches past the ranked runs: skip what of the offset they did not use up.
            if rows or offset == 0:
                ranked_total = offset + len(rows)
            else:
                ranked_total = int(connection.execute(
                    select(func.count()).select_from(ranked.limit(None).offset(None).order_by(None).subquery())
                ).scalar_one())
            unranked = (
                self._filtered(workspace, query)
                .where(latest_scalar_value(self._dialect, metric).is_(None))
                .order_by(RunRow.created_at.desc(), RunRow.run_id.desc())
                .limit(limit - len(rows))
                .offset(max(0, offset - ranked_total))
            )
            rows.extend(connection.execute(unranked).all())
        return rows

    def _search_statement(self, workspace: str, query: RunQuery) -> Select[Any]:
        stmt = self._filtered(workspace, query)
        if query.order_by_metric is not None:
            value = latest_scalar_value(self._dialect, query.order_by_metric)
            ordered = value.desc() if query.descending else value.asc()
            stmt = stmt.order_by(ordered.nulls_last())
        stmt = stmt.order_by(RunRow.created_at.desc(), RunRow.run_id.desc())
        if query.max_results is not None:
            stmt = stmt.limit(query.max_results)
        if query.offset:
            stmt = stmt.offset(query.offset)
        return stmt

    def _filtered(self, workspace: str, query: RunQuery) -> Select[Any]:
        """The runs of the search's filters, unordered."""
        stmt = select(*RECORD_COLUMNS).where(RunRow.workspace == workspace)
        if query.experiment is not None:
            stmt = stmt.where(RunRow.experiment == query.experiment)
        if query.statuses:
            stmt = stmt.where(RunRow.status.in_([RunStatus(s).value for s in query.statuses]))
        attributes = [(TAG, query.tags), (PROPERTY, query.properties)]
        for kind, wanted in attributes:
            for key, value in wanted.items():
                stmt = stmt.where(
                    exists().where(
                        RunAttributeRow.run_id == RunRow.run_id,
                        RunAttributeRow.kind == kind,
                        RunAttributeRow.key == key,
                        RunAttributeRow.value == value,
                    )
                )
        if query.parent_run_id is not None:
            stmt = stmt.where(RunRow.parent_run_id == query.parent_run_id)
        if query.top_level_only:
            stmt = stmt.where(RunRow.parent_run_id.is_(None))
        for condition in query.metric_conditions:
            compare = _CONDITION_OPS.get(condition.op)
            if compare is None:
                raise ValidationError(
                    f"Unknown operator {condition.op!r} in the condition on metric '{condition.metric}'; "
                    f"valid: {', '.join(_CONDITION_OPS)}"
                )
            # A join, not a per-run subquery: with the run's workspace and experiment repeated,
            # the range is read from ix_latest_metrics_rank, so only matching runs are visited.
            # (run_id, name) is the key, so a run joins at most once per condition. A run without
            # the metric (or whose latest value is NaN) matches no condition.
            latest = aliased(LatestMetricRow)
            on = [latest.run_id == RunRow.run_id, latest.name == condition.metric,
                  latest.workspace == RunRow.workspace, latest.experiment == RunRow.experiment]
            stmt = stmt.join(latest, and_(*on)).where(
                compare(comparable_value(self._dialect, latest.value), condition.value)
            )
        return stmt

    def count_child_runs(self, workspace: str, run_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(run_ids))

        def tx(session: Session) -> dict[str, int]:
            self._require_workspace(session, workspace)
            counts = dict.fromkeys(wanted, 0)
            for chunk in chunked(wanted):  # one GROUP BY per chunk (a page is one), on ix_runs_parent_run_id
                stmt = (
                    select(RunRow.parent_run_id, func.count())
                    .where(RunRow.workspace == workspace, RunRow.parent_run_id.in_(list(chunk)))
                    .group_by(RunRow.parent_run_id)
                )
                for parent, count in session.execute(stmt):
                    counts[parent] = int(count)
            return counts

        return self._read(tx)

    def find_run_by_idempotency_key(self, workspace: str, key: str) -> list[RunRecord]:
        def tx(session: Session) -> list[RunRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(
                select(RunRow)
                .where(RunRow.workspace == workspace, RunRow.idempotency_key == key)
                .order_by(RunRow.created_at.desc(), RunRow.run_id.desc())
            ).all()
            return self._run_records(session, rows)

        return self._read(tx)


@functools.cache
def _attribute_insert(dialect: str, *, upsert: bool) -> Any:
    """INSERT into run_attributes, ON CONFLICT updating the value (tags) or doing nothing
    (properties, params). Built once per dialect and run with the rows as executemany
    parameters: a multi-row VALUES is compiled again on every call, and ``excluded`` (which
    proxies the table's columns) costs more to build than the insert to run."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RunAttributeRow.__table__)
    keys = ["run_id", "kind", "key"]
    if upsert:
        return stmt.on_conflict_do_update(index_elements=keys, set_={"value": stmt.excluded.value})
    return stmt.on_conflict_do_nothing(index_elements=keys)
