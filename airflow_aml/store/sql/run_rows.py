"""Run rows -> ``RunRecord`` for reads that return many runs (searches), without the ORM.

A search may return tens of thousands of runs. Through ``Session.execute`` each row pays the
ORM's result machinery, and each ``RunRecord(...)`` the frozen dataclass's ``__init__`` (one
``object.__setattr__`` per field); together they were most of a search's time. Here the statements
run on the session's Core connection (same transaction, plain tuples) and the records are filled
in one ``__dict__`` update. The column types still convert the values (UTC datetimes, JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from airflow_aml.entities import RunRecord, RunStatus
from airflow_aml.store.sql.core import chunked
from airflow_aml.store.sql.records import Attributes
from airflow_aml.store.sql.tables import PARAM, PROPERTY, TAG, RunAttributeRow, RunRow

# The columns a search selects, in the order ``_record`` unpacks them.
RECORD_COLUMNS = (
    RunRow.run_id, RunRow.workspace, RunRow.experiment, RunRow.parent_run_id, RunRow.status,
    RunRow.created_at, RunRow.start_time, RunRow.end_time, RunRow.submitted_by, RunRow.compute_target,
    RunRow.run_config, RunRow.display_name, RunRow.error, RunRow.snapshot_sha256, RunRow.idempotency_key,
    RunRow.cancel_requested, RunRow.heartbeat_at,
)
RECORD_FIELDS = frozenset(field.name for field in dataclasses.fields(RunRecord))
_STATUSES = {status.value: status for status in RunStatus}
_new_record = object.__new__


def run_records(connection: Connection, rows: Sequence[Sequence[Any]]) -> list[RunRecord]:
    """The records of ``rows`` (tuples of ``RECORD_COLUMNS``) with their tags, properties and params."""
    attributes = run_attributes(connection, [row[0] for row in rows])
    return [_record(row, attributes[row[0]]) for row in rows]


def run_attributes(connection: Connection, run_ids: Sequence[str]) -> dict[str, Attributes]:
    """Tags, properties and params of many runs, one query per chunk of ids."""
    result: dict[str, Attributes] = {run_id: {TAG: {}, PROPERTY: {}, PARAM: {}} for run_id in run_ids}
    columns = (RunAttributeRow.run_id, RunAttributeRow.kind, RunAttributeRow.key, RunAttributeRow.value)
    for chunk in chunked(list(result)):
        # fetchall, not iteration: iterating a result fetches one row per DBAPI call.
        stmt = select(*columns).where(RunAttributeRow.run_id.in_(chunk))
        for run_id, kind, key, value in connection.execute(stmt).all():
            result[run_id][kind][key] = value
    return result


def _record(row: Sequence[Any], attributes: Attributes) -> RunRecord:
    (run_id, workspace, experiment, parent_run_id, status, created_at, start_time, end_time, submitted_by,
     compute_target, run_config, display_name, error, snapshot_sha256, idempotency_key, cancel_requested,
     heartbeat_at) = row
    # Every field of RunRecord is set here (test_run_rows checks the names against the dataclass),
    # so skipping its __init__ leaves nothing unset; the dicts are fresh, owned by this record.
    record = _new_record(RunRecord)
    record.__dict__.update(
        run_id=run_id, workspace=workspace, experiment=experiment, parent_run_id=parent_run_id,
        status=_STATUSES[status], created_at=created_at, start_time=start_time, end_time=end_time,
        submitted_by=submitted_by, compute_target=compute_target, run_config=run_config or {},
        display_name=display_name, error=error, tags=attributes[TAG], properties=attributes[PROPERTY],
        params=attributes[PARAM], snapshot_sha256=snapshot_sha256, idempotency_key=idempotency_key,
        cancel_requested=bool(cancel_requested), heartbeat_at=heartbeat_at,
    )
    return record
