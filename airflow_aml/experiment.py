"""``Experiment``: a named group of runs, and where runs are started and searched.

    exp = ws.experiment("iris")
    run = exp.submit("src/", RunConfiguration(script="train.py"), idempotency_key="af-...")
    exp.search_runs(metrics=["accuracy >= 0.9"], order_by="accuracy")
    exp.best_run("accuracy")

An experiment is created in the store when its first run is.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_aml.activities import ActivityKind
from airflow_aml.compute import RunLaunch, build_compute_target
from airflow_aml.context import DATASTORE_PROPERTY, SNAPSHOT_NAME, WorkspaceContext, run_file
from airflow_aml.entities import ActivityStatus, MetricCondition, RunQuery, RunRecord, RunStatus
from airflow_aml.exceptions import DuplicateAttemptError, ValidationError
from airflow_aml.names import validate_name
from airflow_aml.roles import Action
from airflow_aml.runconfig import RunConfiguration, check_source_directory
from airflow_aml.runs import Run
from airflow_aml.snapshots import create_snapshot

PREVIOUS_ATTEMPT_PROPERTY = "previous_attempt"


class Experiment:
    """A named group of runs; created in the store when its first run is."""

    def __init__(self, workspace: WorkspaceContext, name: str) -> None:
        self.workspace = workspace
        self.name = validate_name("experiment", name)

    def __repr__(self) -> str:
        return f"Experiment(workspace={self.workspace.name!r}, name={self.name!r})"

    # ------------------------------------------------------------------ creating runs
    def start_logging(
        self, *, display_name: str | None = None, tags: Mapping[str, str] | None = None,
        snapshot_directory: str | Path | None = None,
    ) -> Run:
        """An interactive run in this process (a notebook, a script run by hand): status Running."""
        ws = self.workspace
        ws.require(Action.WRITE)
        record = ws.store.create_run(
            workspace=ws.name, experiment=self.name, submitted_by=ws.principal,
            display_name=display_name, tags=tags, status=RunStatus.RUNNING,
            properties={DATASTORE_PROPERTY: ws.record.default_datastore},
        )
        run = Run(ws, record)
        if snapshot_directory is not None:
            run.take_snapshot(snapshot_directory)
        return run

    def submit(
        self,
        source_directory: str | Path,
        run_config: RunConfiguration | Mapping[str, Any] | str | Path,
        *,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
        idempotency_key: str | None = None,
        properties: Mapping[str, str] | None = None,
        reuse_completed: bool = True,
        attempt_tag: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Run:
        """Snapshot ``source_directory`` and start ``run_config`` on its compute target.

        Everything is validated before anything is written: the source directory, the run
        configuration, the compute target and the snapshot size. Returns at once; use
        ``run.wait_for_completion()`` to wait.

        With an ``idempotency_key`` (what a retried Airflow task passes), a run submitted earlier
        with the same key is returned instead of a new one while it is still going, or when it
        completed and ``reuse_completed`` is true; after a failed, canceled (or, without
        ``reuse_completed``, completed) attempt a new run is started, linked to the previous one by
        its ``previous_attempt`` property. ``attempt_tag`` tags each attempt with its number (1, 2
        ...) under that name. ``log`` receives one line saying which of these happened.
        """
        ws = self.workspace
        ws.require(Action.WRITE)
        say = log or (lambda _line: None)
        source = check_source_directory(source_directory)
        if isinstance(run_config, Mapping):
            run_config = dict(run_config)
        config_obj = RunConfiguration.coerce(run_config)  # type: ignore[arg-type]
        properties = dict(properties or {})
        attempt = 1
        if idempotency_key:
            earlier = ws.store.find_run_by_idempotency_key(ws.name, idempotency_key)
            reused = self._earlier_attempt(earlier, reuse_completed, say)
            if reused is not None:
                return reused
            if earlier:
                properties[PREVIOUS_ATTEMPT_PROPERTY] = earlier[0].run_id
                attempt = len(earlier) + 1
        target = build_compute_target(ws, config_obj.target)
        target.validate(config_obj, source)
        datastore = ws.get_default_datastore()
        tags = {**(tags or {}), **({attempt_tag: str(attempt)} if attempt_tag else {})}

        with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
            zip_path = Path(tmp) / SNAPSHOT_NAME
            snapshot = create_snapshot(source, zip_path)  # SnapshotTooLargeError before any record
            try:
                record = ws.store.create_run(
                    workspace=ws.name, experiment=self.name, submitted_by=ws.principal,
                    compute_target=config_obj.target, run_config=config_obj.to_dict(),
                    display_name=display_name, tags=tags,
                    properties={**properties, DATASTORE_PROPERTY: datastore.name},
                    idempotency_key=idempotency_key, idempotency_attempt=attempt if idempotency_key else None,
                )
            except DuplicateAttemptError:
                # Another copy of this task (a zombie and its retry, or a double trigger) created
                # this attempt's run between our lookup and our insert: follow that one.
                racer = self._earlier_attempt(
                    ws.store.find_run_by_idempotency_key(ws.name, idempotency_key or ""), True, say
                )
                if racer is None:
                    raise
                return racer
            activity = ws.store.create_activity(
                ws.name, kind=ActivityKind.RUN, target_id=record.run_id, activity_id=record.run_id, message="Queued",
            )
            try:
                snapshot_path = run_file(record.run_id, SNAPSHOT_NAME)
                datastore.upload_file(zip_path, snapshot_path, show_progress=True)
                ws.store.set_snapshot(record.run_id, snapshot.sha256)
                target.submit(
                    RunLaunch(
                        workspace=ws.name, store_uri=ws.store_uri, run_id=record.run_id,
                        principal=ws.principal, run_config=config_obj.to_dict(),
                        snapshot_path=snapshot_path, datastore=datastore.name,
                    )
                )
            except BaseException as exc:
                # The run exists now: record why it never started instead of leaving it Queued.
                message = f"Submission failed: {exc}"
                ws.store.update_run_status(record.run_id, RunStatus.FAILED, error=message)
                ws.store.update_activity(activity.activity_id, status=ActivityStatus.FAILED, error=message)
                raise
        say(f"Submitted run {record.run_id} of experiment {self.name} on {config_obj.target}"
            + (f" (attempt {attempt})" if attempt > 1 else ""))
        return Run(ws, ws.store.get_run(record.run_id))

    def _earlier_attempt(
        self, earlier: list[RunRecord], reuse_completed: bool, say: Callable[[str], None]
    ) -> Run | None:
        """The newest earlier attempt when it is to be returned instead of a new run."""
        if not earlier:
            return None
        latest = earlier[0]
        if not latest.status.is_terminal:
            say(f"Reattaching to run {latest.run_id} started by an earlier attempt ({latest.status.value})")
            return Run(self.workspace, latest)
        if latest.status is RunStatus.COMPLETED and reuse_completed:
            say(f"Run {latest.run_id} was completed by an earlier attempt; not training again")
            return Run(self.workspace, latest)
        say(f"The earlier attempt's run {latest.run_id} ended {latest.status.value}: starting a new attempt")
        return None

    # ------------------------------------------------------------------ querying
    def get_runs(
        self, *, status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tags: Mapping[str, str] | None = None, include_children: bool = False,
    ) -> list[Run]:
        """Runs of this experiment, newest first (top-level only unless include_children)."""
        return self.search_runs(status=status, tags=tags, include_children=include_children)

    def search_runs(
        self,
        *,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[MetricCondition | str] = (),
        order_by: str | None = None,
        descending: bool = True,
        include_children: bool = True,
        parent_run_id: str | None = None,
        max_results: int | None = None,
    ) -> list[Run]:
        """Filter by status, tags and metric conditions (``"accuracy >= 0.9"``), order by a metric."""
        query = RunQuery(
            experiment=self.name,
            statuses=_statuses(status),
            tags=dict(tags or {}),
            parent_run_id=parent_run_id,
            top_level_only=not include_children and parent_run_id is None,
            metric_conditions=tuple(parse_metric_condition(m) for m in metrics),
            order_by_metric=order_by,
            descending=descending,
            max_results=max_results,
        )
        return [Run(self.workspace, r) for r in self.workspace.store.search_runs(self.workspace.name, query)]

    def best_run(
        self, metric: str, *, goal: str = "maximize", include_children: bool = True,
        status: RunStatus | str | None = RunStatus.COMPLETED, tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> Run | None:
        """The run with the best latest value of ``metric``; None when no run logged it."""
        if goal not in ("maximize", "minimize"):
            raise ValidationError(f"goal must be 'maximize' or 'minimize', not {goal!r}")
        runs = self.search_runs(
            status=status, tags=tags, include_children=include_children, parent_run_id=parent_run_id,
            order_by=metric, descending=goal == "maximize",
        )
        # Ordered in the store; NaN sorts differently on SQLite and PostgreSQL, so skip it here.
        latest = self.workspace.store.get_latest_scalar_metrics([r.id for r in runs])
        for run in runs:
            value = latest.get(run.id, {}).get(metric)
            if value is not None and not math.isnan(value):
                return run
        return None

    def get_metrics_table(self, *, include_children: bool = True, as_frame: bool = False) -> Any:
        """One row per run: run id, status, tags, and the latest value of each scalar metric.

        A list of dicts, or a pandas DataFrame with ``as_frame=True`` (pandas is optional).
        """
        runs = self.search_runs(include_children=include_children)
        latest = self.workspace.store.get_latest_scalar_metrics([r.id for r in runs])
        rows = []
        for run in runs:
            record = run.record
            rows.append({
                "run_id": record.run_id, "parent_run_id": record.parent_run_id, "status": record.status.value,
                **{f"tag.{k}": v for k, v in record.tags.items()},
                **latest.get(record.run_id, {}),
            })
        if as_frame:
            try:
                import pandas as pd
            except ImportError as exc:
                raise ValidationError("as_frame=True needs pandas: pip install 'airflow-aml[pandas]'") from exc
            return pd.DataFrame(rows)
        return rows


def parse_metric_condition(value: MetricCondition | str) -> MetricCondition:
    if isinstance(value, MetricCondition):
        condition = value
    else:
        parts = str(value).split()
        if len(parts) != 3:
            raise ValidationError(f"Metric condition {value!r} must look like 'accuracy >= 0.9'")
        name, op, number = parts
        try:
            condition = MetricCondition(name, op, float(number))
        except ValueError:
            raise ValidationError(f"Metric condition {value!r}: {number!r} is not a number") from None
    if condition.op not in MetricCondition.OPS:
        raise ValidationError(f"Metric condition operator {condition.op!r} not in {', '.join(MetricCondition.OPS)}")
    return condition


def _statuses(status: RunStatus | str | Sequence[RunStatus | str] | None) -> tuple[RunStatus, ...]:
    if status is None:
        return ()
    items = [status] if isinstance(status, str | RunStatus) else list(status)
    try:
        return tuple(RunStatus(s) for s in items)
    except ValueError:
        raise ValidationError(
            f"Unknown run status in {items!r}; valid: {', '.join(s.value for s in RunStatus)}"
        ) from None


__all__ = ["Experiment", "parse_metric_condition"]
