"""Activities: progress records of long operations (runs, later image builds and deployments)."""

from __future__ import annotations

import math
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_aml.entities import ActivityRecord, ActivityStatus
from airflow_aml.exceptions import ActivityNotFoundError, AlreadyExistsError
from airflow_aml.store.sql.core import SqlCore, utcnow
from airflow_aml.store.sql.records import activity_record
from airflow_aml.store.sql.tables import ActivityRow


class ActivityStore(SqlCore):
    def create_activity(
        self, workspace: str, *, kind: str, target_id: str, message: str = "", activity_id: str | None = None
    ) -> ActivityRecord:
        new_id = activity_id or uuid.uuid4().hex

        def tx(session: Session) -> ActivityRecord:
            self._require_workspace(session, workspace)
            if session.get(ActivityRow, new_id) is not None:
                raise AlreadyExistsError(f"Activity '{new_id}' already exists")
            now = utcnow()
            row = ActivityRow(
                activity_id=new_id,
                workspace=workspace,
                kind=kind,
                target_id=target_id,
                status=ActivityStatus.NOT_STARTED.value,
                progress=0.0,
                message=message,
                created_at=now,
                updated_at=now,
                ended_at=None,
                error=None,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # same id inserted concurrently (PostgreSQL)
                raise AlreadyExistsError(f"Activity '{new_id}' already exists") from exc
            return activity_record(row)

        return self._write(tx)

    def update_activity(
        self,
        activity_id: str,
        *,
        status: ActivityStatus | None = None,
        progress: float | None = None,
        message: str | None = None,
        error: str | None = None,
    ) -> ActivityRecord:
        new_status = None if status is None else ActivityStatus(status)

        def tx(session: Session) -> ActivityRecord:
            row = self._activity_row(session, activity_id, lock=True)
            _apply_update(row, new_status, progress, message, error)
            session.flush()
            return activity_record(row)

        return self._write(tx)

    def _update_target_activities(
        self, session: Session, target_id: str, kind: str, status: ActivityStatus, *, message: str,
        error: str | None,
    ) -> None:
        """``update_activity`` (progress 1) of every activity of ``kind`` on ``target_id``, in
        the caller's transaction: no read of the list first."""
        rows = session.scalars(
            select(ActivityRow).where(ActivityRow.target_id == target_id, ActivityRow.kind == kind).with_for_update()
        )
        for row in rows:
            _apply_update(row, status, 1.0, message, error)
        session.flush()

    def get_activity(self, activity_id: str) -> ActivityRecord:
        return self._read(lambda session: activity_record(self._activity_row(session, activity_id)))

    def list_activities(
        self, workspace: str, *, target_id: str | None = None, kind: str | None = None
    ) -> list[ActivityRecord]:
        def tx(session: Session) -> list[ActivityRecord]:
            self._require_workspace(session, workspace)
            stmt = select(ActivityRow).where(ActivityRow.workspace == workspace)
            if target_id is not None:
                stmt = stmt.where(ActivityRow.target_id == target_id)
            if kind is not None:
                stmt = stmt.where(ActivityRow.kind == kind)
            stmt = stmt.order_by(ActivityRow.created_at, ActivityRow.activity_id)
            return [activity_record(row) for row in session.scalars(stmt)]

        return self._read(tx)

    def _activity_row(self, session: Session, activity_id: str, *, lock: bool = False) -> ActivityRow:
        stmt = select(ActivityRow).where(ActivityRow.activity_id == activity_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).one_or_none()
        if row is None:
            raise ActivityNotFoundError(f"Activity '{activity_id}' not found")
        return row


def _apply_update(
    row: ActivityRow, status: ActivityStatus | None, progress: float | None, message: str | None, error: str | None,
) -> None:
    if ActivityStatus(row.status).is_terminal:
        return  # final: a late update must not reopen it
    now = utcnow()
    if progress is not None and not math.isnan(progress):
        # Updates may arrive out of order: progress only moves forward.
        row.progress = max(row.progress, min(1.0, max(0.0, float(progress))))
    if status is not None:
        row.status = status.value
        if status is ActivityStatus.SUCCEEDED:
            row.progress = 1.0
        if status.is_terminal:
            row.ended_at = now
    if message is not None:
        row.message = message
    if error is not None:
        row.error = error
    row.updated_at = now
