"""Metrics and run logs: the high-volume, append-only part of a run."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from airflow_aml.entities import LogChunk, Metric, MetricKind
from airflow_aml.exceptions import InvalidMetricError, RunNotFoundError
from airflow_aml.store.sql.core import SqlCore, chunked
from airflow_aml.store.sql.metric_sql import latest_scalar_values
from airflow_aml.store.sql.records import log_chunk_record, metric_record
from airflow_aml.store.sql.tables import LatestMetricRow, MetricRow, RunLogChunkRow, RunRow
from airflow_aml.store.sql.types import check_json

METRICS = MetricRow.__table__
LATEST = LatestMetricRow.__table__
METRIC_COLUMNS = (
    MetricRow.name,
    MetricRow.value,
    MetricRow.step,
    MetricRow.timestamp,
    MetricRow.kind,
    MetricRow.payload,
)


class MetricStore(SqlCore):
    # ----------------------------------------------------------------- metrics
    def log_batch(self, run_id: str, metrics: Sequence[Metric]) -> None:
        rows = self._metric_rows(run_id, metrics)

        self._write(lambda session: self._insert_metrics(session, run_id, rows))

    def _metric_rows(self, run_id: str, metrics: Sequence[Metric]) -> list[dict[str, Any]]:
        """The rows of ``metrics``, built before a transaction: a bad payload fails before the
        write lock is taken."""
        return [_metric_values(run_id, metric) for metric in metrics]

    def _insert_metrics(
        self, session: Session, run_id: str, rows: list[dict[str, Any]], owner: tuple[str, str] | None = None
    ) -> None:
        """Insert ``rows`` and move the run's latest values; ``owner`` (workspace, experiment)
        when the caller has already read the run's row."""
        if owner is None:
            # Terminal runs still accept metrics: buffered ones may arrive after the status flip.
            found = session.execute(
                select(RunRow.workspace, RunRow.experiment).where(RunRow.run_id == run_id)
            ).one_or_none()
            if found is None:
                raise RunNotFoundError(f"Run '{run_id}' not found")
            owner = (found.workspace, found.experiment)
        if rows:
            # Core executemany on the table, not the ORM bulk path: several times faster.
            session.execute(insert(METRICS), rows)
        latest = _latest_per_name(rows)
        if latest:
            values = [{**row, "workspace": owner[0], "experiment": owner[1]} for row in latest]
            session.execute(self._upsert_latest(), values)

    def _upsert_latest(self) -> Any:
        return _upsert_latest(self._dialect)

    def get_metrics(self, run_id: str, names: Sequence[str] | None = None) -> list[Metric]:
        def tx(session: Session) -> list[Metric]:
            self._require_run(session, run_id)
            # Plain column rows rather than ORM objects: a run can have many thousands.
            stmt = select(*METRIC_COLUMNS).where(MetricRow.run_id == run_id)
            if names is not None:
                stmt = stmt.where(MetricRow.name.in_(list(names)))
            stmt = stmt.order_by(self._bytewise(MetricRow.name), MetricRow.step, MetricRow.timestamp, MetricRow.id)
            return [metric_record(*row) for row in session.execute(stmt)]

        return self._read(tx)

    def get_latest_scalar_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        wanted = list(dict.fromkeys(run_ids))

        def tx(session: Session) -> dict[str, dict[str, float]]:
            result: dict[str, dict[str, float]] = {}
            for chunk in chunked(wanted):
                found = set(session.scalars(select(RunRow.run_id).where(RunRow.run_id.in_(list(chunk)))))
                missing = [run_id for run_id in chunk if run_id not in found]
                if missing:
                    raise RunNotFoundError(f"Run '{missing[0]}' not found")
                # Rows unpack as tuples (Result.tuples() is deprecated in SQLAlchemy 2.1).
                for run_id, name, value in session.execute(latest_scalar_values(chunk)):
                    result.setdefault(run_id, {})[name] = math.nan if value is None else value
            return {run_id: result.get(run_id, {}) for run_id in wanted}

        return self._read(tx)

    def get_latest_metrics(self, run_ids: Sequence[str]) -> dict[str, list[Metric]]:
        wanted = list(dict.fromkeys(run_ids))

        def tx(session: Session) -> dict[str, list[Metric]]:
            result: dict[str, list[Metric]] = {run_id: [] for run_id in wanted}
            for chunk in chunked(wanted):
                found = set(session.scalars(select(RunRow.run_id).where(RunRow.run_id.in_(list(chunk)))))
                missing = [run_id for run_id in chunk if run_id not in found]
                if missing:
                    raise RunNotFoundError(f"Run '{missing[0]}' not found")
                stmt = select(
                    LatestMetricRow.run_id,
                    LatestMetricRow.name,
                    LatestMetricRow.value,
                    LatestMetricRow.step,
                    LatestMetricRow.timestamp,
                ).where(LatestMetricRow.run_id.in_(list(chunk)))
                for run_id, name, value, step, timestamp in session.execute(
                    stmt.order_by(self._bytewise(LatestMetricRow.name))
                ):
                    result[run_id].append(Metric(name, math.nan if value is None else value, step, timestamp))
            return result

        return self._read(tx)

    # ----------------------------------------------------------------- logs
    def append_log(self, run_id: str, stream: str, text: str) -> None:
        def tx(session: Session) -> None:
            # Bumping the counter on the run row locks it until commit, so chunks of one run
            # commit in seq order and a follower polling with after_seq never skips one.
            seq = session.execute(
                update(RunRow)
                .where(RunRow.run_id == run_id)
                .values(last_log_seq=RunRow.last_log_seq + 1)
                .returning(RunRow.last_log_seq)
            ).scalar_one_or_none()
            if seq is None:
                raise RunNotFoundError(f"Run '{run_id}' not found")
            session.add(RunLogChunkRow(run_id=run_id, seq=seq, stream=stream, text=text, timestamp=time.time()))

        self._write(tx)

    def read_log(self, run_id: str, *, after_seq: int = 0) -> list[LogChunk]:
        def tx(session: Session) -> list[LogChunk]:
            self._require_run(session, run_id)
            rows = session.scalars(
                select(RunLogChunkRow)
                .where(RunLogChunkRow.run_id == run_id, RunLogChunkRow.seq > after_seq)
                .order_by(RunLogChunkRow.seq)
            )
            return [log_chunk_record(row) for row in rows]

        return self._read(tx)


def _latest_per_name(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scalar metric name of one batch, its row that ``latest_metrics`` may take: the highest
    (step, timestamp), the last of the batch on a tie (it is inserted last)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["kind"] != MetricKind.SCALAR.value:
            continue
        current = best.get(row["name"])
        if current is None or (row["step"], row["timestamp"]) >= (current["step"], current["timestamp"]):
            best[row["name"]] = row
    return [{key: row[key] for key in ("run_id", "name", "step", "value", "timestamp")} for row in best.values()]


def _metric_values(run_id: str, metric: Metric) -> dict[str, object]:
    try:
        kind = MetricKind(metric.kind)
        value = None if metric.value is None else float(metric.value)
        step, timestamp = int(metric.step), float(metric.timestamp)
    except (TypeError, ValueError) as exc:
        raise InvalidMetricError(f"Metric '{metric.name}' cannot be stored: {exc}") from exc
    payload = None if metric.payload is None else check_json(dict(metric.payload), f"Payload of metric '{metric.name}'")
    return {
        "run_id": run_id,
        "name": metric.name,
        "step": step,
        "value": value,
        "timestamp": timestamp,
        "kind": kind.value,
        "payload": payload,
    }


@functools.cache
def _upsert_latest(dialect: str) -> Any:
    """INSERT .. ON CONFLICT (run_id, name) DO UPDATE when the new value is the later one:
    a higher step, or the same step at the same or a later time (ties: the later write wins,
    as the later-inserted metric row does). Built once per dialect (statements are immutable):
    ``excluded`` proxies every column of the table, which cost more than the upsert to run."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(LATEST)
    new, old = statement.excluded, LATEST.c
    return statement.on_conflict_do_update(
        index_elements=[old.run_id, old.name],
        set_={"step": new.step, "value": new.value, "timestamp": new.timestamp},
        where=or_(new.step > old.step, and_(new.step == old.step, new.timestamp >= old.timestamp)),
    )
