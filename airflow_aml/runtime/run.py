"""``Run``: the run a script (or a notebook) logs to.

Inside a script started by a compute target, ``Run.get_context()`` returns the live run (the
compute target put its identity in the environment). Started anywhere else, the same call
returns an ``OfflineRun`` that prints to the console, so one script works both ways.

This is the script side of a run: metrics, params, tags, files, child runs, status, details, logs,
the snapshot, its own end. It needs a workspace context and nothing above it (no compute
targets, no Airflow, no SQL): what runs inside a container imports it. The SDK's run handle
(``airflow_aml.runs.Run``) extends it with waiting and canceling through the compute target.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Self

from airflow_aml.activities import ActivityKind, activity_status_for_run
from airflow_aml.config import ENV_PRINCIPAL, ENV_RUN_ID, ENV_STORE_URI, ENV_WORKSPACE
from airflow_aml.context import (
    DATASTORE_PROPERTY,
    SNAPSHOT_NAME,
    MetricWriter,
    WorkspaceContext,
    run_file,
    run_prefix,
)
from airflow_aml.datastores import AbstractDatastore
from airflow_aml.entities import LogChunk, Metric, MetricKind, RunQuery, RunRecord, RunStatus
from airflow_aml.exceptions import InvalidMetricError, RunNotFoundError, ValidationError
from airflow_aml.names import validate_metric_name
from airflow_aml.roles import Action
from airflow_aml.runtime.offline import OfflineRun
from airflow_aml.runtime.values import fold_metric, metric_value
from airflow_aml.snapshots import create_snapshot, safe_extract
from airflow_aml.store.buffer import flush_all

_HIDDEN_FILES = {SNAPSHOT_NAME}


class Run:
    """A run in a workspace. Cheap to build; ``record`` re-reads the store."""

    def __init__(self, workspace: WorkspaceContext, record: RunRecord) -> None:
        self.workspace = workspace
        self._record = record
        self._steps: dict[str, int] = {}
        self._steps_lock = threading.Lock()

    @functools.cached_property
    def _metrics(self) -> MetricWriter:
        # Made when first needed: a search builds a Run per returned run, and most never log.
        return self.workspace.metric_writer(self._record.run_id)

    # ------------------------------------------------------------------ construction
    @classmethod
    def get(cls, workspace: WorkspaceContext, run_id: str) -> Self:
        record = workspace.store.get_run(run_id)
        if record.workspace != workspace.name:
            raise RunNotFoundError(f"Run {run_id!r} not found in workspace {workspace.name!r}")
        return cls(workspace, record)

    @classmethod
    def get_context(cls, *, allow_offline: bool = True) -> Self | OfflineRun:
        """The run this script was started as, or an offline run when started by hand."""
        run_id = os.environ.get(ENV_RUN_ID)
        if not run_id:
            if not allow_offline:
                raise ValidationError(f"Not inside a run: ${ENV_RUN_ID} is not set")
            return OfflineRun()
        context = WorkspaceContext.open(
            os.environ[ENV_WORKSPACE],
            store_uri=os.environ.get(ENV_STORE_URI),
            principal=os.environ.get(ENV_PRINCIPAL),
        )
        run = cls.get(context, run_id)
        _install_sigterm_flush()
        return run

    # ------------------------------------------------------------------ identity and status
    @property
    def id(self) -> str:
        return self._record.run_id

    @property
    def experiment(self) -> str:
        return self._record.experiment

    @property
    def record(self) -> RunRecord:
        self._record = self.workspace.store.get_run(self.id)
        return self._record

    @property
    def status(self) -> RunStatus:
        return self.record.status

    @property
    def parent(self) -> Self | None:
        parent_id = self._record.parent_run_id
        return type(self).get(self.workspace, parent_id) if parent_id else None

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, experiment={self.experiment!r}, status={self._record.status.value!r})"

    # ------------------------------------------------------------------ status and details
    def get_status(self, *, include_children: bool = False) -> RunStatus:
        """The run's status; with ``include_children``, folded with its descendants' statuses.

        A parent is only as done as its children: Running while any of them is not finished,
        Failed if it or any of them failed, Canceled if it was canceled, else Completed.
        """
        own = self.record.status
        if not include_children:
            return own
        statuses = [own] + [child.record.status for child in self.get_children(recursive=True)]
        if not all(s.is_terminal for s in statuses):
            return own if not own.is_terminal else RunStatus.RUNNING
        if RunStatus.FAILED in statuses:
            return RunStatus.FAILED
        if own is RunStatus.CANCELED or RunStatus.CANCELED in statuses:
            return RunStatus.CANCELED
        return RunStatus.COMPLETED

    def get_details(self) -> dict[str, Any]:
        r = self.record
        return {
            "runId": r.run_id,
            "experiment": r.experiment,
            "displayName": r.display_name,
            "parentRunId": r.parent_run_id,
            "status": r.status.value,
            "target": r.compute_target,
            "submittedBy": r.submitted_by,
            "createdTimeUtc": r.created_at.isoformat(),
            "startTimeUtc": r.start_time.isoformat() if r.start_time else None,
            "endTimeUtc": r.end_time.isoformat() if r.end_time else None,
            "durationSeconds": r.duration_seconds,
            "error": r.error,
            "tags": dict(r.tags),
            "properties": dict(r.properties),
            "params": dict(r.params),
            "runDefinition": dict(r.run_config),
            "snapshotSha256": r.snapshot_sha256,
        }

    # ------------------------------------------------------------------ lifecycle of in-process runs
    def start(self) -> None:
        self.workspace.store.update_run_status(self.id, RunStatus.RUNNING)

    def complete(self) -> None:
        self.workspace.require(Action.WRITE)
        self._finish(RunStatus.COMPLETED)

    def fail(self, error: str | BaseException | None = None) -> None:
        self.workspace.require(Action.WRITE)
        message = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        self._finish(RunStatus.FAILED, message)

    def cancel(self) -> None:
        """Ask the run to stop. An in-process run (no compute target) ends Canceled at once; one on
        a compute target is stopped by its supervisor, which polls the request."""
        record = self.workspace.store.request_cancel(self.id)
        if not record.status.is_terminal and not record.compute_target:
            self._finish(RunStatus.CANCELED)

    def _finish(self, status: RunStatus, error: str | None = None) -> None:
        """The run's queued metrics, its status and its activities (a submitted run has one) in
        one store call: on the SQL store one transaction, so a finished run has all its metrics."""
        store, final = self.workspace.store, activity_status_for_run(status)

        def write(metrics: list[Metric]) -> RunRecord:
            return store.finish_run(
                self.id, status, workspace=self.workspace.name, error=error, metrics=metrics,
                activity_kind=ActivityKind.RUN, activity_status=final,
            )

        self._record = self._metrics.take(write)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.workspace.store.get_run(self.id).status.is_terminal:
            return
        if exc is None:
            self.complete()
        elif isinstance(exc, KeyboardInterrupt):
            self._finish(RunStatus.CANCELED)
        else:
            self.fail(exc)

    # ------------------------------------------------------------------ metrics
    def _next_step(self, name: str, step: int | None) -> int:
        with self._steps_lock:
            if step is None:
                step = self._steps.get(name, 0)
            self._steps[name] = max(self._steps.get(name, 0), step + 1)
            return step

    def _queue(self, metric: Metric) -> None:
        self._metrics.add(metric)  # checked when queued, not when the background thread writes

    def log(self, name: str, value: float, *, step: int | None = None, description: str = "") -> None:
        """Log one number; repeated calls build a series (step 0, 1, 2 ... unless given)."""
        validate_metric_name(name)
        number = metric_value(name, value)
        self._queue(Metric(name, number, self._next_step(name, step), time.time()))

    def log_list(self, name: str, values: Iterable[float], *, description: str = "") -> None:
        validate_metric_name(name)
        numbers_ = [metric_value(name, v) for v in values]  # all checked before any is queued
        self.workspace.require(Action.WRITE)
        now = time.time()
        for number in numbers_:
            self._queue(Metric(name, number, self._next_step(name, None), now))

    def log_row(self, name: str, *, description: str = "", **columns: Any) -> None:
        """Append one row to a table metric: ``run.log_row("roc", fpr=0.1, tpr=0.8)``."""
        validate_metric_name(name)
        if not columns:
            raise InvalidMetricError(f"Metric {name!r}: log_row needs at least one column")
        row = {column: metric_value(f"{name}.{column}", v) for column, v in columns.items()}
        self._queue(Metric(name, None, self._next_step(name, None), time.time(), MetricKind.ROW, row))

    def log_table(self, name: str, value: Mapping[str, Sequence[float]], *, description: str = "") -> None:
        """Log a table given as columns of equal length: ``{"x": [1, 2], "y": [3, 4]}``."""
        validate_metric_name(name)
        lengths = {len(column) for column in value.values()}
        if len(lengths) > 1:
            raise InvalidMetricError(f"Metric {name!r}: table columns have different lengths {sorted(lengths)}")
        columns = {k: [metric_value(f"{name}.{k}", v) for v in vs] for k, vs in value.items()}
        self.workspace.require(Action.WRITE)
        length = lengths.pop() if lengths else 0
        for i in range(length):
            row = {k: columns[k][i] for k in columns}
            self._queue(Metric(name, None, self._next_step(name, None), time.time(), MetricKind.ROW, row))

    def log_image(self, name: str, path: str | Path | None = None, *, plot: Any = None, description: str = "") -> None:
        """Log a PNG file or a matplotlib figure; stored under the run's ``images/``."""
        validate_metric_name(name)
        if (path is None) == (plot is None):
            raise InvalidMetricError(f"Metric {name!r}: give exactly one of path= or plot=")
        self.workspace.require(Action.WRITE)
        if plot is not None:
            buffer = io.BytesIO()
            figure = plot.gcf() if hasattr(plot, "gcf") else plot  # the pyplot module or a Figure
            figure.savefig(buffer, format="png")
            data = buffer.getvalue()
        else:
            data = Path(path).read_bytes()  # type: ignore[arg-type]
            if not data.startswith(b"\x89PNG"):
                raise InvalidMetricError(f"Metric {name!r}: {str(path)!r} is not a PNG file")
        step = self._next_step(name, None)
        artifact = f"images/{name.replace('/', '_')}_{step}.png"
        self.upload_bytes(artifact, data)
        self._queue(Metric(name, None, step, time.time(), MetricKind.IMAGE, {"path": artifact}))

    def log_param(self, key: str, value: Any) -> None:
        self.workspace.store.log_params(self.id, {key: str(value)})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.workspace.store.log_params(self.id, {k: str(v) for k, v in params.items()})

    def tag(self, key: str, value: str = "") -> None:
        self.workspace.store.set_run_tags(self.id, {key: str(value)})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.workspace.store.set_run_tags(self.id, {k: str(v) for k, v in tags.items()})

    def remove_tags(self, *keys: str) -> None:
        """Delete the named tags, all or none (a key the run has no tag of is a NotFoundError)."""
        self.workspace.store.delete_run_tags(self.id, list(keys))

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        self.workspace.store.add_run_properties(self.id, {k: str(v) for k, v in properties.items()})

    def flush(self) -> None:
        """Write buffered metrics now (also done in the background, and at exit)."""
        self._metrics.flush()

    def get_metrics(self, name: str | None = None, *, recursive: bool = False) -> dict[str, Any]:
        """Metrics as in the Azure ML SDK: a number for a single value, a list for a series,
        ``{column: [values]}`` for a table, the image path(s) for images. With ``recursive``:
        ``{run_id: metrics}`` for this run and all its descendants."""
        self.workspace.require(Action.READ)
        self.flush()
        if recursive:
            runs = [self, *self.get_children(recursive=True)]
            return {run.id: run.get_metrics(name) for run in runs}
        metrics = self.workspace.store.get_metrics(self.id, [name] if name else None)
        grouped: dict[str, list[Metric]] = {}
        for metric in metrics:
            grouped.setdefault(metric.name, []).append(metric)
        return {key: fold_metric(values) for key, values in grouped.items()}

    # ------------------------------------------------------------------ files
    @property
    def _datastore(self) -> AbstractDatastore:
        name = self._record.properties.get(DATASTORE_PROPERTY)
        return self.workspace.get_datastore(name) if name else self.workspace.get_default_datastore()

    def upload_file(self, name: str, path_or_stream: str | Path | BinaryIO) -> None:
        """Store a file in the run as ``name`` (e.g. ``outputs/model.pkl``)."""
        if isinstance(path_or_stream, str | Path):
            self._datastore.upload_file(path_or_stream, run_file(self.id, name), show_progress=True)
        else:
            with self._datastore.open_write(run_file(self.id, name)) as handle:
                while chunk := path_or_stream.read(1 << 20):
                    handle.write(chunk)

    def upload_bytes(self, name: str, data: bytes) -> None:
        self._datastore.write_bytes(run_file(self.id, name), data)

    def upload_folder(self, name: str, path: str | Path) -> None:
        """Store every file below ``path`` in the run under the folder ``name``."""
        self._datastore.upload(path, run_file(self.id, name), show_progress=True)

    def get_file_names(self) -> list[str]:
        prefix = run_prefix(self.id) + "/"
        return [
            info.path[len(prefix):]
            for info in self._datastore.list(prefix)
            if info.path[len(prefix):] not in _HIDDEN_FILES
        ]

    def download_file(self, name: str, output_file_path: str | Path | None = None) -> Path:
        target = Path(output_file_path) if output_file_path else Path(Path(name).name)
        if target.is_dir():
            target = target / Path(name).name
        return self._datastore.download_file(run_file(self.id, name), target, show_progress=True)

    def download_files(self, prefix: str = "", output_directory: str | Path = ".") -> list[Path]:
        """Download the run's files below ``prefix`` (e.g. ``outputs``), keeping their paths."""
        source = run_file(self.id, prefix) if prefix else run_prefix(self.id)
        target = Path(output_directory)
        if prefix:  # keep the prefix folder itself in the local copy, as Azure ML does
            target = target / prefix.strip("/")
        return self._datastore.download(target, source, show_progress=True)

    def take_snapshot(self, source_directory: str | Path) -> str:
        """Zip ``source_directory`` into the run's snapshot; returns its SHA-256."""
        self.workspace.require(Action.WRITE)
        with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
            zip_path = Path(tmp) / SNAPSHOT_NAME
            info = create_snapshot(source_directory, zip_path, show_progress=True)
            self._datastore.upload_file(zip_path, run_file(self.id, SNAPSHOT_NAME), show_progress=True)
        self.workspace.store.set_snapshot(self.id, info.sha256)
        return info.sha256

    # ------------------------------------------------------------------ logs and snapshot
    def read_log(self, *, after_seq: int = 0) -> list[LogChunk]:
        return self.workspace.store.read_log(self.id, after_seq=after_seq)

    def get_log_text(self) -> str:
        return "".join(chunk.text for chunk in self.read_log())

    def download_snapshot(self, output_path: str | Path) -> Path:
        """The snapshot zip of the run's source directory, as it was submitted."""
        return self._datastore.download_file(run_file(self.id, SNAPSHOT_NAME), output_path, show_progress=True)

    def restore_snapshot(self, output_directory: str | Path) -> list[str]:
        """Extract the snapshot safely (no path escapes, bounded size) into ``output_directory``."""
        with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
            zip_path = self.download_snapshot(Path(tmp) / SNAPSHOT_NAME)
            return safe_extract(zip_path, output_directory)


    # ------------------------------------------------------------------ children
    def child_run(self, name: str | None = None, *, tags: Mapping[str, str] | None = None) -> Self:
        """Start a child run in this process (status Running); use it as a context manager."""
        record = self.workspace.store.create_run(
            workspace=self.workspace.name, experiment=self.experiment, submitted_by=self.workspace.principal,
            parent_run_id=self.id, display_name=name, tags=tags, status=RunStatus.RUNNING,
            properties={DATASTORE_PROPERTY: self._datastore.name},
        )
        return type(self)(self.workspace, record)

    def create_children(self, count: int | None = None, *, tag_key: str | None = None,
                        tag_values: Sequence[str] | None = None) -> list[Self]:
        """Create ``count`` child runs (or one per ``tag_values``, tagged ``tag_key``)."""
        if tag_values is not None:
            if not tag_key:
                raise ValidationError("create_children: tag_values needs tag_key")
            return [self.child_run(tags={tag_key: str(v)}) for v in tag_values]
        if count is None or count < 1:
            raise ValidationError(f"create_children: count must be a positive number, not {count!r}")
        return [self.child_run() for _ in range(count)]

    def get_children(self, *, recursive: bool = False) -> list[Self]:
        store = self.workspace.store
        # The store lists newest first; children read best in the order they were created.
        children = [
            type(self)(self.workspace, r)
            for r in reversed(store.search_runs(self.workspace.name, RunQuery(parent_run_id=self.id)))
        ]
        if recursive:
            for child in list(children):
                children.extend(child.get_children(recursive=True))
        return children


_SIGTERM_INSTALLED = False


def _install_sigterm_flush() -> None:
    """On SIGTERM (cancel, timeout) flush metrics, then exit as the default handler would."""
    global _SIGTERM_INSTALLED
    if _SIGTERM_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # the script has its own handler; atexit still flushes if it exits normally

    def _handler(signum: int, frame: Any) -> None:
        flush_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)
    _SIGTERM_INSTALLED = True


__all__ = ["OfflineRun", "Run"]
