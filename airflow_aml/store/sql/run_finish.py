"""Ending an in-process run in one transaction: its last metrics, its status, its activities.

``run.complete()`` used to cost four round trips (the metric flush, the status, a read of the
run's activities, one update per activity); on SQLite each is a BEGIN IMMEDIATE .. COMMIT. The
three writes are one unit anyway: a run shown Completed has all its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from airflow_aml.entities import ActivityStatus, Metric, RunRecord, RunStatus
from airflow_aml.exceptions import RunNotFoundError
from airflow_aml.store.sql.activities import ActivityStore
from airflow_aml.store.sql.metrics import MetricStore
from airflow_aml.store.sql.runs import RunStore


class RunFinishStore(RunStore, MetricStore, ActivityStore):
    def finish_run(
        self, run_id: str, status: RunStatus, *, workspace: str, error: str | None = None,
        metrics: Sequence[Metric] = (), activity_kind: str | None = None,
        activity_status: ActivityStatus | None = None,
    ) -> RunRecord:
        status = RunStatus(status)
        rows = self._metric_rows(run_id, metrics)

        def tx(session: Session) -> RunRecord:
            row = self._set_status(session, run_id, status, error)  # RunNotFoundError first
            if row.workspace != workspace:
                raise RunNotFoundError(f"Run '{run_id}' not found in workspace '{workspace}'")
            self._insert_metrics(session, run_id, rows, owner=(row.workspace, row.experiment))
            if activity_kind is not None and activity_status is not None:
                self._update_target_activities(
                    session, run_id, activity_kind, activity_status, message=status.value, error=error
                )
            return self._run_record(session, row)

        return self._write(tx)
