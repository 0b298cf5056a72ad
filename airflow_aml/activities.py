"""Activities: the long operations of a workspace, and the one way to wait for them.

An activity is created for every run, image build and deployment change; whatever carries the
work out (a run's supervisor, a build worker, a deployment's supervisor) reports its status,
progress (0..1) and message on it, and everything that waits -- ``Run.wait_for_completion``,
``Image.wait_for_completion``, ``Deployment.wait_for_deployment``, the Airflow operators, sensors
and trigger -- waits through ``ActivityWaiter``:

    waiter = ActivityWaiter(ctx, activity_id, worker=check, on_progress=print_progress)
    final = waiter.wait(timeout=600)       # WaitTimeoutError at the deadline; the activity goes on
    record = waiter.poll()                 # or one look at a time (a sensor's poke, a trigger)

A waiter given a ``WorkerCheck`` notices when the process carrying the activity is gone (killed,
machine rebooted) and ends the wait at once with the activity Failed, instead of waiting forever.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ActivityRecord, ActivityStatus, RunStatus
from airflow_aml.exceptions import ActivityNotFoundError, AmlError, AuthorizationError, WaitTimeoutError
from airflow_aml.roles import Action


class ActivityKind(enum.StrEnum):
    RUN = "run"  # the activity id is the run id
    IMAGE_BUILD = "image_build"  # target "name:version"
    DEPLOYMENT_CREATE = "deployment_create"  # target: the deployment name
    DEPLOYMENT_UPDATE = "deployment_update"
    DEPLOYMENT_DELETE = "deployment_delete"
    DEPLOYMENT_RESTORE = "deployment_restore"


DEPLOYMENT_KINDS = frozenset({
    ActivityKind.DEPLOYMENT_CREATE, ActivityKind.DEPLOYMENT_UPDATE, ActivityKind.DEPLOYMENT_DELETE,
    ActivityKind.DEPLOYMENT_RESTORE,
})
TERMINAL_STATUSES = frozenset({ActivityStatus.SUCCEEDED, ActivityStatus.FAILED, ActivityStatus.CANCELED})

# The one map from a run's final status to its activity's.
RUN_ACTIVITY_STATUS: dict[RunStatus, ActivityStatus] = {
    RunStatus.COMPLETED: ActivityStatus.SUCCEEDED,
    RunStatus.FAILED: ActivityStatus.FAILED,
    RunStatus.CANCELED: ActivityStatus.CANCELED,
}


def activity_status_for_run(status: RunStatus) -> ActivityStatus:
    """The activity status of a run in ``status``."""
    if status in RUN_ACTIVITY_STATUS:
        return RUN_ACTIVITY_STATUS[status]
    return ActivityStatus.NOT_STARTED if status is RunStatus.QUEUED else ActivityStatus.RUNNING


# ---------------------------------------------------------------------------------- lookups
def get_activity(ctx: WorkspaceContext, activity_id: str) -> ActivityRecord:
    """The activity ``activity_id`` of this workspace (ActivityNotFoundError for another's)."""
    activity = ctx.store.get_activity(activity_id)
    if activity.workspace != ctx.name:
        raise ActivityNotFoundError(f"Activity {activity_id!r} not found in workspace {ctx.name!r}")
    return activity


def list_activities(
    ctx: WorkspaceContext, *, target_id: str | None = None, kind: str | None = None
) -> list[ActivityRecord]:
    return ctx.store.list_activities(ctx.name, target_id=target_id, kind=kind)


def describe(activity: ActivityRecord) -> str:
    """One line for a log: ``scorer:2: Running 40% Installing requirements`` (target, status,
    progress, message); callers say what kind of activity it is."""
    text = f"{activity.target_id}: {activity.status.value} {activity.progress:.0%}"
    return f"{text} {activity.message}".rstrip()


# ---------------------------------------------------------------------------------- waiting
@dataclass(frozen=True)
class WorkerCheck:
    """How a waiter tells that the process carrying an activity is gone.

    ``alive()``: True / False, or None when it cannot be told from here (another host, a process
    not started yet). ``abandon(activity, reason)``: record the loss on the feature's own records
    (the run Failed, the image Failed ...); the waiter then fails the activity itself.
    ``grace``: seconds the worker may look dead before it counts (a supervisor that is starting,
    or handing over to another). ``where``: the worker for messages (``pid 42 on host``).
    ``ended()``: the end the feature's own record shows, which the activity then takes.
    """

    alive: Callable[[], bool | None]
    abandon: Callable[[ActivityRecord, str], None] | None = None
    grace: float = 0.0
    where: str = "its worker process"
    # The status the feature's own record says the work ended with (a run Completed ...), or None
    # while it goes on: the record is written first, the activity after it, and a worker that
    # died between the two must not leave a finished run waited for, or recorded lost.
    ended: Callable[[], ActivityStatus | None] | None = None
    # Why the worker counts as gone, when the feature can say better than "no longer running"
    # (a run's supervisor that stopped beating on another host); None: the default message.
    explain: Callable[[], str | None] | None = None


ProgressCallback = Callable[[ActivityRecord], None]

LONG_POLL = 20.0  # seconds a waiter with nothing else to watch lets one long-poll wait


class ActivityWaiter:
    """Follows one activity: ``poll()`` looks once, ``wait()`` looks until it ends.

    ``on_progress`` is called with the activity whenever its status, progress or message changed
    since the last call (the first poll always reports). A waiter keeps what it saw across calls,
    so a caller that waits in slices (a sensor, a trigger) gets the same behaviour as one long wait.
    """

    def __init__(
        self,
        ctx: WorkspaceContext,
        activity_id: str,
        *,
        worker: WorkerCheck | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.ctx = ctx
        self.activity_id = activity_id
        self.worker = worker
        self.on_progress = on_progress
        self._reported: tuple[ActivityStatus, float, str] | None = None
        self._dead_since: float | None = None

    def poll(self) -> ActivityRecord:
        """The activity now; a lost worker ends it Failed (so the returned record is terminal)."""
        activity = self._read()
        if activity.status.is_terminal or self.worker is None:
            return activity
        if (final := self._ended()) is not None:
            return self._settle(activity, final)
        if self.worker.alive() is not False:
            self._dead_since = None
            return activity
        # Dead for the grace period: seen dead that long by this waiter, or with the activity not
        # updated for that long (a waiter that polls from a new process each time, a rescheduled
        # sensor, has no memory; the activity's last update is the record's).
        now = time.monotonic()
        self._dead_since = self._dead_since or now
        quiet_for = time.time() - activity.updated_at.timestamp()
        if max(now - self._dead_since, quiet_for) < self.worker.grace:
            return activity
        activity = self._read()  # it may have ended just before its worker exited
        if activity.status.is_terminal:
            return activity
        if (final := self._ended()) is not None:
            return self._settle(activity, final)
        return self._abandon(activity)

    def wait(
        self, *, timeout: float | None = None, poll_interval: float = 1.0,
        on_poll: ProgressCallback | None = None,
    ) -> ActivityRecord:
        """Poll until the activity ends; returns its final record (Succeeded or not: the caller
        decides what a failure means). WaitTimeoutError after ``timeout`` seconds. ``on_poll`` is
        called after every look (a run's waiter streams its log from there)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            activity = self.poll()
            if on_poll is not None:
                on_poll(activity)
            if activity.status.is_terminal:
                return activity
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"Activity {activity.activity_id} ({activity.kind} {activity.target_id}) still "
                    f"{activity.status.value} after {timeout:g} s ({activity.message or 'no message'})",
                    activity_id=activity.activity_id,
                )
            # Nothing but the activity to watch (no log to stream, no worker to check here): on a
            # served workspace one long-poll may wait for the next change much longer than a poll.
            self._pause(activity, poll_interval, deadline, only_activity=on_poll is None and self.worker is None)

    # ------------------------------------------------------------------ helpers
    def _pause(
        self, activity: ActivityRecord, poll_interval: float, deadline: float | None, *, only_activity: bool,
    ) -> None:
        """Wait until the next look: ``poll_interval`` (never past ``deadline``), a sleep. On a
        served workspace the service's long-poll instead, which answers as soon as the activity
        changes, and may wait up to ``LONG_POLL`` when there is nothing else to look at."""
        client = self.ctx.service_client
        longest = LONG_POLL if client is not None and only_activity else poll_interval
        seconds = longest if deadline is None else max(0.0, min(longest, deadline - time.monotonic()))
        if client is None or seconds <= 0:
            time.sleep(seconds)
            return
        started = time.monotonic()
        try:
            client.wait_activity(activity.activity_id, after=activity.updated_at, timeout=seconds)
        except AmlError:
            # A service without the long-poll (older), or a refusal the next poll reports itself.
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))

    def _read(self) -> ActivityRecord:
        activity = get_activity(self.ctx, self.activity_id)
        seen = (activity.status, activity.progress, activity.message)
        if seen != self._reported:
            self._reported = seen
            if self.on_progress is not None:
                self.on_progress(activity)
        return activity

    def _ended(self) -> ActivityStatus | None:
        return None if self.worker is None or self.worker.ended is None else self.worker.ended()

    def _settle(self, activity: ActivityRecord, final: ActivityStatus) -> ActivityRecord:
        """The feature's record ended but its activity was not told: the activity follows it."""
        if not self.ctx.allows(Action.WRITE):
            return dataclasses.replace(activity, status=final, progress=1.0)
        self.ctx.store.update_activity(activity.activity_id, status=final, progress=1.0,
                                       message=activity.message or final.value)
        return self._read()

    def _abandon(self, activity: ActivityRecord) -> ActivityRecord:
        assert self.worker is not None
        reason = (self.worker.explain() if self.worker.explain is not None else None) or (
            f"{self.worker.where} is no longer running; it ended before {activity.kind} {activity.target_id} did"
        )
        if not self.ctx.allows(Action.WRITE):
            # A Reader may not record the loss; it still learns of it at once instead of waiting.
            raise AmlError(f"Activity {activity.activity_id}: {reason}")
        try:
            if self.worker.abandon is not None:
                self.worker.abandon(activity, reason)
            current = get_activity(self.ctx, self.activity_id)
            if not current.status.is_terminal:
                self.ctx.store.update_activity(
                    activity.activity_id, status=ActivityStatus.FAILED, error=reason, message="Worker lost",
                )
        except AuthorizationError:
            raise AmlError(f"Activity {activity.activity_id}: {reason}") from None
        return self._read()


def poll_until(
    done: Callable[[], bool], *, timeout: float | None, poll_interval: float, what: Callable[[], str],
) -> None:
    """Poll ``done()`` until it is true; WaitTimeoutError (``what()`` describes the wait) after
    ``timeout``. For records made without an activity (a run logged from a notebook), where the
    record's own status is all there is to follow."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"{what()} after {timeout:g} s")
        time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))


def wait_for_activity(
    ctx: WorkspaceContext,
    activity_id: str,
    *,
    timeout: float | None = None,
    poll_interval: float = 1.0,
    on_progress: ProgressCallback | None = None,
    worker: WorkerCheck | None = None,
) -> ActivityRecord:
    """Wait until ``activity_id`` ends and return its final record; see ``ActivityWaiter``."""
    waiter = ActivityWaiter(ctx, activity_id, worker=worker, on_progress=on_progress)
    return waiter.wait(timeout=timeout, poll_interval=poll_interval)


__all__ = [
    "DEPLOYMENT_KINDS",
    "RUN_ACTIVITY_STATUS",
    "TERMINAL_STATUSES",
    "ActivityKind",
    "ActivityWaiter",
    "WorkerCheck",
    "activity_status_for_run",
    "describe",
    "get_activity",
    "list_activities",
    "poll_until",
    "wait_for_activity",
]
