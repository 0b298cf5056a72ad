"""A sweep's parent run: one child run per grid point, at most ``max_concurrent`` at a time.

Each child is an ordinary run record (``parent_run_id`` set, ``sweep.<param>`` tags, its own
run_config without the sweep and with ``--<param> <value>`` appended to the arguments) executed
by ``Supervisor.execute`` exactly like a single run, in its own work folder, with the parent's
prepared interpreter. The parent ends Completed when every child completed, Canceled when it was
canceled, else Failed naming the children that did not complete.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from airflow_aml.activities import ActivityKind
from airflow_aml.compute.logstream import LogBatcher
from airflow_aml.compute.phases import PROGRESS_FINALIZING, PROGRESS_RUNNING, control
from airflow_aml.context import DATASTORE_PROPERTY
from airflow_aml.entities import ActivityStatus, RunRecord, RunStatus
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)


class SweepHost(Protocol):
    """What a sweep needs of the run supervisor that hosts it (``run_supervisor.Supervisor``)."""

    store: AbstractStore
    principal: str
    stop: threading.Event
    poll_interval: float
    aborted: bool

    def execute(self, run_id: str, config: RunConfiguration, interpreter: str, zip_path: Path,
                batcher: LogBatcher, *, parent_run_id: str | None = None) -> RunStatus: ...

    def end(self, run_id: str, status: RunStatus, *, error: str | None = None,
            batcher: LogBatcher | None = None) -> RunStatus: ...

    def activity(self, activity_id: str, **changes: Any) -> None: ...


def child_arguments(arguments: tuple[str, ...], point: dict[str, Any]) -> tuple[str, ...]:
    extra: list[str] = []
    for name, value in point.items():
        extra += [f"--{name}", str(value)]
    return (*arguments, *extra)


def child_configs(config: RunConfiguration) -> list[tuple[dict[str, str], RunConfiguration]]:
    """(tags, run configuration) of every child, in grid order."""
    assert config.sweep is not None
    children = []
    for point in config.sweep.combinations():
        child = config.model_copy(update={"sweep": None, "arguments": child_arguments(config.arguments, point)})
        children.append(({f"sweep.{name}": str(value) for name, value in point.items()}, child))
    return children


def run_sweep(
    sup: SweepHost,
    parent: RunRecord,
    config: RunConfiguration,
    interpreter: str,
    zip_path: Path,
    batcher: LogBatcher,
) -> RunStatus:
    assert config.sweep is not None
    parent_id = parent.run_id
    store = sup.store
    children: list[str] = []
    configs: dict[str, RunConfiguration] = {}
    for tags, child_config in child_configs(config):
        record = store.create_run(
            workspace=parent.workspace,
            experiment=parent.experiment,
            submitted_by=sup.principal,
            parent_run_id=parent_id,
            compute_target=parent.compute_target,
            run_config=child_config.to_dict(),
            tags=tags,
            # Children keep their files where the parent does.
            properties={k: v for k, v in parent.properties.items() if k == DATASTORE_PROPERTY},
        )
        if parent.snapshot_sha256:
            store.set_snapshot(record.run_id, parent.snapshot_sha256)
        try:  # an activity per child, so that its progress can be followed like any run's
            store.create_activity(parent.workspace, kind=ActivityKind.RUN, target_id=record.run_id,
                                  activity_id=record.run_id)
        except Exception:
            log.warning("Could not create the activity of child run %s", record.run_id, exc_info=True)
        children.append(record.run_id)
        configs[record.run_id] = child_config
        control(batcher, f"Created child run {record.run_id} ({', '.join(f'{k}={v}' for k, v in tags.items())})")
    total = len(children)
    store.update_run_status(parent_id, RunStatus.RUNNING)
    sup.activity(parent_id, status=ActivityStatus.RUNNING, progress=PROGRESS_RUNNING,
                 message=f"0/{total} child runs finished")
    results: dict[str, RunStatus] = {}

    def run_child(child_id: str) -> RunStatus:
        child_batcher = LogBatcher(store, child_id)
        try:
            if sup.stop.is_set():
                control(child_batcher, "Canceled before it started: the sweep was canceled")
                return sup.end(child_id, RunStatus.CANCELED, batcher=child_batcher)
            store.update_run_status(child_id, RunStatus.PREPARING)
            return sup.execute(child_id, configs[child_id], interpreter, zip_path, child_batcher,
                               parent_run_id=parent_id)
        except BaseException as exc:
            log.exception("Child run %s failed in the supervisor", child_id)
            status = RunStatus.CANCELED if sup.stop.is_set() else RunStatus.FAILED
            return sup.end(child_id, status, batcher=child_batcher,
                           error=None if status is RunStatus.CANCELED else f"{type(exc).__name__}: {exc}")
        finally:
            child_batcher.close()

    pool = ThreadPoolExecutor(max_workers=config.sweep.max_concurrent, thread_name_prefix="aml-sweep")
    try:
        futures: dict[Future[RunStatus], str] = {pool.submit(run_child, child_id): child_id for child_id in children}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=sup.poll_interval, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
            if done:
                finished = len(results)
                progress = PROGRESS_RUNNING + (PROGRESS_FINALIZING - PROGRESS_RUNNING) * finished / total
                sup.activity(parent_id, progress=progress,
                             message=f"{finished}/{total} child runs finished")
                control(batcher, f"{finished}/{total} child runs finished")
            if not sup.stop.is_set() and pending and _cancel_requested(sup, parent_id):
                control(batcher, "Sweep canceled: stopping the child runs")
                sup.stop.set()  # running children are killed, queued ones end Canceled unstarted
    finally:
        # On an error in this loop: stop the children rather than leave them running unsupervised.
        if len(results) < total:
            sup.aborted = True
            sup.stop.set()
        pool.shutdown(wait=True)
    if sup.stop.is_set():
        return sup.end(parent_id, RunStatus.CANCELED, batcher=batcher)
    failed = [f"{child_id} ({results[child_id]})" for child_id in children
              if results[child_id] is not RunStatus.COMPLETED]
    if failed:
        return sup.end(parent_id, RunStatus.FAILED, batcher=batcher, error=(
            f"{len(failed)} of {total} child runs of sweep {parent_id!r} did not complete: " + ", ".join(failed)
        ))
    return sup.end(parent_id, RunStatus.COMPLETED, batcher=batcher)


def _cancel_requested(sup: SweepHost, run_id: str) -> bool:
    try:
        return sup.store.get_run(run_id).cancel_requested
    except Exception:
        log.warning("Could not poll cancel flag of run %s", run_id, exc_info=True)
        return False
