"""The SDK's handle on a run: everything a script can do to its run, plus watching it from outside.

    run = ws.experiment("iris").submit("src/", config)
    run.wait_for_completion(show_output=True)    # streams the log; RunFailedError unless Completed
    run.get_status(include_children=True)        # a sweep's parent folded with its children
    run.cancel()                                 # through the run's compute target
    run.restore_snapshot("checkout/")

``Run`` extends the script-side ``airflow_aml.runtime.Run`` (metrics, files, children, status,
details, logs, snapshot) with what needs the rest of the SDK: the compute target (cancel, whether
the run's process still lives) and the one activity waiter.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_aml.activities import (
    ActivityKind,
    ActivityWaiter,
    ProgressCallback,
    WorkerCheck,
    activity_status_for_run,
    poll_until,
)
from airflow_aml.compute import build_compute_target
from airflow_aml.config import run_lost_after_seconds
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ActivityRecord, ActivityStatus, LogChunk, RunQuery, RunRecord, RunStatus
from airflow_aml.exceptions import NotFoundError, RunFailedError, WaitTimeoutError
from airflow_aml.roles import Action
from airflow_aml.runtime.run import Run as ScriptRun

LogCallback = Callable[[LogChunk], None]
ChildLogCallback = Callable[["Run", LogChunk], None]


class Run(ScriptRun):
    """A run in a workspace, as the SDK returns it (``ws.get_run``, ``experiment.submit`` ...)."""

    # ------------------------------------------------------------------ lifecycle
    def cancel(self) -> None:
        """Cancel the run: its compute target stops the script; an in-process run ends Canceled."""
        record = self.record
        if record.status.is_terminal:
            return
        if record.compute_target:
            build_compute_target(self.workspace, record.compute_target).cancel(self.id)
        else:
            super().cancel()

    def wait_for_completion(
        self,
        *,
        show_output: bool = False,
        timeout: float | None = None,
        raise_on_error: bool = True,
        poll_interval: float = 1.0,
        on_log: LogCallback | None = None,
        on_child_log: ChildLogCallback | None = None,
        log_positions: dict[str, int] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Block until the run ends and return ``get_details()``.

        ``show_output`` streams the run's log, and its child runs' (a sweep's) prefixed with the
        child, to stdout; ``on_log`` receives each chunk of the run's own log instead (e.g. an
        Airflow task's logger) and ``on_child_log`` each chunk of a child's, with the child.
        ``log_positions`` (``{run_id: last seq handed over}``) is updated in place: give it again,
        also in another process, to go on where an earlier wait stopped. ``on_progress`` gets the
        run's activity whenever it changes. RunFailedError when it did not complete (unless
        ``raise_on_error=False``), WaitTimeoutError after ``timeout`` seconds (the run goes on). A
        run whose supervisor is gone (killed, machine rebooted) is recorded Failed at once instead
        of being waited for forever.
        """
        self.workspace.require(Action.READ)
        if show_output:
            on_log = on_log or _print_chunk
            on_child_log = on_child_log or _print_child_chunk
        follower = None
        if on_log is not None or on_child_log is not None:
            follower = _LogFollower(self, on_log, on_child_log, log_positions)
        on_poll = None if follower is None else lambda _activity: follower.follow()
        try:
            if self._has_activity():
                self.waiter(on_progress=on_progress).wait(timeout=timeout, poll_interval=poll_interval, on_poll=on_poll)
            else:
                self._wait_for_record(timeout=timeout, poll_interval=poll_interval, on_poll=on_poll)
        except WaitTimeoutError:
            raise WaitTimeoutError(
                f"Run {self.id!r} still {self.record.status.value} after {timeout:g} s", activity_id=self.id,
            ) from None
        if follower is not None:
            follower.follow()  # the last lines, written between the last two reads
        record = self.record
        if raise_on_error and record.status is not RunStatus.COMPLETED:
            raise RunFailedError(
                f"Run {self.id!r} ended {record.status.value}: {record.error or 'no error recorded'}",
                run_id=self.id, status=record.status.value, error=record.error,
            )
        return self.get_details()

    def stream_logs(
        self, *, on_log: LogCallback | None = None, on_child_log: ChildLogCallback | None = None,
        log_positions: dict[str, int] | None = None,
    ) -> None:
        """Hand what the run and its children logged after ``log_positions`` to the callbacks,
        once (as ``wait_for_completion`` does while it waits); ``log_positions`` is updated."""
        self.workspace.require(Action.READ)
        _LogFollower(self, on_log, on_child_log, log_positions).follow()

    def _has_activity(self) -> bool:
        try:
            self.workspace.store.get_activity(self.id)
        except NotFoundError:
            return False
        return True

    def _wait_for_record(self, *, timeout: float | None, poll_interval: float, on_poll: Any) -> None:
        """A run logged from a process (``start_logging``, a child run) has no activity and no
        worker to watch: its status is what its process records."""
        def ended() -> bool:
            if on_poll is not None:
                on_poll(None)
            return self.record.status.is_terminal

        poll_until(ended, timeout=timeout, poll_interval=poll_interval,
                   what=lambda: f"Run {self.id!r} still {self._record.status.value}")

    def waiter(self, *, on_progress: ProgressCallback | None = None) -> ActivityWaiter:
        """The waiter of this run's activity (its id is the run id), watching its supervisor."""
        return ActivityWaiter(self.workspace, self.id, worker=run_worker_check(self.workspace, self._record),
                              on_progress=on_progress)


class _LogFollower:
    """Hands each new chunk of a run's log, and of its descendants', to a callback, in order,
    once; ``positions`` holds the last seq handed over per run."""

    def __init__(
        self, run: Run, on_log: LogCallback | None, on_child_log: ChildLogCallback | None,
        positions: dict[str, int] | None = None,
    ) -> None:
        self.run = run
        self.on_log = on_log
        self.on_child_log = on_child_log
        self.positions = positions if positions is not None else {}

    def follow(self) -> None:
        if self.on_log is not None:
            self._hand(self.run, self.on_log)
        if self.on_child_log is not None:
            # Children appear while a sweep runs: looked up on every pass.
            for child in self.run.get_children(recursive=True):
                self._hand(child, functools.partial(self.on_child_log, child))

    def _hand(self, run: Run, callback: LogCallback) -> None:
        for chunk in run.read_log(after_seq=self.positions.get(run.id, 0)):
            callback(chunk)
            self.positions[run.id] = chunk.seq


def _print_chunk(chunk: LogChunk) -> None:
    sys.stdout.write(chunk.text)
    sys.stdout.flush()


def _print_child_chunk(child: Run, chunk: LogChunk) -> None:
    for line in chunk.text.splitlines():
        sys.stdout.write(f"[{child.id}] {line}\n")
    sys.stdout.flush()


def run_worker_check(ctx: WorkspaceContext, record: RunRecord) -> WorkerCheck | None:
    """How a waiter tells that the process carrying this run is gone: asked of the run's compute
    target (an in-process run has none, and nothing to watch)."""
    if not record.compute_target:
        return None
    target = build_compute_target(ctx, record.compute_target)

    def alive() -> bool | None:
        try:
            current = ctx.store.get_run(record.run_id)
        except NotFoundError:
            return None
        verdict = target.worker_alive(current)
        if verdict is True:  # seen running on this machine: trusted over a late heartbeat
            return True
        # Another machine's supervisor (or a reboot here): its heartbeat tells.
        return False if heartbeat_silence(ctx, current) > run_lost_after_seconds() else verdict

    def explain() -> str | None:
        try:
            silent = heartbeat_silence(ctx, ctx.store.get_run(record.run_id))
        except NotFoundError:
            return None
        limit = run_lost_after_seconds()
        return _no_heartbeat(silent, limit) if silent > limit else None

    def ended() -> ActivityStatus | None:
        status = ctx.store.get_run(record.run_id).status
        return activity_status_for_run(status) if status.is_terminal else None

    return WorkerCheck(alive=alive, abandon=lambda activity, reason: fail_lost_run(ctx, record.run_id, reason),
                       where=f"The process carrying run {record.run_id!r} on compute target {target.name!r}",
                       ended=ended, explain=explain)


def fail_lost_run(ctx: WorkspaceContext, run_id: str, reason: str) -> None:
    """Record a run whose compute is gone Failed, with what went down with it: its unfinished
    ancestors (a sweep's children run in their parent's supervisor) and all their descendants."""
    store = ctx.store
    top = store.get_run(run_id)
    while top.parent_run_id:
        parent = store.get_run(top.parent_run_id)
        if parent.status.is_terminal:
            break
        top = parent
    error = f"Run {top.run_id!r} lost its compute: {reason}"
    pending = [top.run_id]
    while pending:
        current = pending.pop()
        record = store.get_run(current)
        if not record.status.is_terminal:
            store.update_run_status(current, RunStatus.FAILED, error=error)
            _end_run_activity(ctx, current, RunStatus.FAILED, error)
        pending.extend(child.run_id for child in _children(ctx, current))


def _children(ctx: WorkspaceContext, run_id: str) -> list[RunRecord]:
    return ctx.store.search_runs(ctx.name, RunQuery(parent_run_id=run_id))


def _end_run_activity(ctx: WorkspaceContext, run_id: str, status: RunStatus, error: str | None) -> None:
    try:
        activity: ActivityRecord = ctx.store.get_activity(run_id)
    except NotFoundError:
        return
    if not activity.status.is_terminal and activity.kind == ActivityKind.RUN:
        ctx.store.update_activity(run_id, status=activity_status_for_run(status), progress=1.0,
                                  message=status.value, error=error)


__all__ = ["Run", "fail_lost_run", "run_worker_check"]


# ---------------------------------------------------------------------------------- heartbeats
def heartbeat_silence(ctx: WorkspaceContext, record: RunRecord) -> float:
    """Seconds since the supervisor carrying ``record`` last beat (a sweep child's is its
    parent's); 0.0 when nothing beats for it (an interactive run, or one started before
    heartbeats), so that such a run is never judged by a heartbeat it never had."""
    carrier = record
    while carrier.heartbeat_at is None and carrier.parent_run_id:
        carrier = ctx.store.get_run(carrier.parent_run_id)
    if carrier.heartbeat_at is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - carrier.heartbeat_at).total_seconds())


def _no_heartbeat(silent: float, limit: float) -> str:
    return f"its supervisor sent no heartbeat for {silent:.0f} s (the limit is {limit:g} s)"


def reap_lost_runs(ctx: WorkspaceContext, *, lost_after: float | None = None) -> list[str]:
    """Fail every unfinished run of the workspace whose supervisor stopped beating more than
    ``lost_after`` seconds ago (default ``$AML_RUN_LOST_AFTER_SECONDS``) and is not seen running
    on this machine: killed, out of memory, or on a machine that rebooted. Each is Failed with
    "lost its compute", with its children, and its activity ends, so that waiters and sensors
    return. Returns the ids of the runs failed."""
    ctx.require(Action.WRITE)
    limit = run_lost_after_seconds() if lost_after is None else lost_after
    since = datetime.now(UTC) - timedelta(seconds=limit)
    reaped = []
    for record in ctx.store.find_runs_without_heartbeat(ctx.name, since=since):
        if record.compute_target and build_compute_target(ctx, record.compute_target).worker_alive(record):
            continue  # its process runs here: a slow store, not a lost run
        fail_lost_run(ctx, record.run_id, _no_heartbeat(heartbeat_silence(ctx, record), limit))
        reaped.append(record.run_id)
    return reaped
