"""``AmlActivityTrigger``: waits for an activity (a run, an image build, a deployment) to end.

One trigger serves every sensor and deferrable operator of the provider. It follows the activity
with the SDK's one waiter (``Workspace.activity_waiter``: it also notices a worker process that
died, and then ends the activity Failed) from a thread (the store client is synchronous; the
event loop is never blocked), logs progress as it changes, honours an absolute deadline, and
yields exactly one event - never sooner than ``settle`` seconds after it started, so that the
task does not come back before Airflow has seen its deferring process exit (``settle.py``):

    {"status": "success" | "error" | "timeout", "message": str, "activity_id": str,
     "target_id": str, "activity_status": str, "progress": float, "progress_message": str}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_aml.activities import describe
from airflow_aml.entities import ActivityRecord, ActivityStatus
from airflow_aml.hooks.settings import WorkspaceSettings
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.triggers.settle import settle_seconds


class AmlActivityTrigger(BaseTrigger):
    """
    :param activity_id: the activity to watch (a run's activity id is its run id).
    :param aml_conn_id: the ``aml_workspace`` connection.
    :param poll_interval: seconds between two reads of the store.
    :param end_time: absolute deadline (epoch seconds); None waits for ever.
    :param settle: the event waits until the trigger has run this long (default ``settle_seconds()``).
    """

    def __init__(
        self,
        activity_id: str,
        aml_conn_id: str = AmlWorkspaceHook.default_conn_name,
        poll_interval: float = 5.0,
        end_time: float | None = None,
        settle: float | None = None,
    ) -> None:
        super().__init__()
        self.activity_id = activity_id
        self.aml_conn_id = aml_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        # Resolved where the task defers and serialized, so the triggerer holds what the task chose.
        self.settle = settle_seconds() if settle is None else float(settle)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "activity_id": self.activity_id,
                "aml_conn_id": self.aml_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "settle": self.settle,
            },
        )

    async def _settings(self) -> WorkspaceSettings:
        try:
            conn = await AmlWorkspaceHook.aget_connection(self.aml_conn_id)
        except AirflowNotFoundException:
            if self.aml_conn_id != AmlWorkspaceHook.default_conn_name:
                raise
            conn = None
        return AmlWorkspaceHook.settings_for(conn, self.aml_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The triggerer only runs a trigger once its deferral is recorded: the clock starts here.
        started = time.monotonic()
        event = await self._watch()
        await self._hold(started, event)
        yield TriggerEvent(event)

    async def _watch(self) -> dict[str, Any]:
        try:
            settings = await self._settings()
            workspace = await asyncio.to_thread(settings.open)
            waiter = await asyncio.to_thread(workspace.activity_waiter, self.activity_id, on_progress=self._report)
            while True:
                activity = await asyncio.to_thread(waiter.poll)
                if activity.status.is_terminal:
                    return self._event(activity)
                if self.end_time is not None and time.time() >= self.end_time:
                    return self._event(activity, status="timeout", message=(
                        f"Activity {self.activity_id} ({activity.kind} {activity.target_id}) still "
                        f"{activity.status.value} at the deadline"
                    ))
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # one event, always: the task turns it into a clear failure
            return {
                "status": "error", "message": f"Watching activity {self.activity_id} failed: {exc}",
                "activity_id": self.activity_id, "target_id": None, "activity_status": None,
                "progress": None, "progress_message": None,
            }

    async def _hold(self, started: float, event: dict[str, Any]) -> None:
        """Keep the event until the trigger has run ``settle`` seconds: resumed sooner, the task
        could be queued before Airflow processed the exit of the process that deferred, and
        Airflow would fail it (``settle.py``)."""
        remaining = self.settle - (time.monotonic() - started)
        if remaining > 0:
            self.log.info("%s; resuming the task in %.1f s (Airflow must first see the deferring process exit)",
                          event["message"], remaining)
            await asyncio.sleep(remaining)

    def _report(self, activity: ActivityRecord) -> None:
        self.log.info("Activity %s (%s %s)", activity.activity_id, activity.kind, describe(activity))

    def _event(self, activity: ActivityRecord, *, status: str | None = None, message: str | None = None) -> dict:
        if status is None:
            status = "success" if activity.status is ActivityStatus.SUCCEEDED else "error"
        if message is None:
            message = f"Activity {activity.activity_id} ({activity.kind} {activity.target_id}) ended " + (
                activity.status.value + (f": {activity.error}" if activity.error else "")
            )
        return {
            "status": status,
            "message": message,
            "activity_id": activity.activity_id,
            "target_id": activity.target_id,
            "activity_status": activity.status.value,
            "progress": activity.progress,
            "progress_message": activity.message,
        }
