"""Sensors that wait for an activity (``AmlActivitySensor``) or a run (``AmlRunSensor``).

Both work in ``mode="poke"``, ``mode="reschedule"`` (never sooner than the settle time) and
``deferrable=True`` (the shared ``AmlActivityTrigger``, after ``defer_after`` seconds in the
task); the task log shows the activity's progress while waiting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_aml.activities import ActivityWaiter, describe
from airflow_aml.entities import ActivityStatus
from airflow_aml.links import AmlRunLink
from airflow_aml.sensors.base import AmlBaseSensor
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds, wait_briefly


class AmlActivitySensor(AmlBaseSensor):
    """Wait until an activity ends; fail if it ends in anything but Succeeded.

    :param activity_id: the activity (a run's activity id is its run id).
    """

    template_fields: Sequence[str] = ("aml_conn_id", "activity_id")

    def __init__(self, *, activity_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activity_id = activity_id
        self._waiter: ActivityWaiter | None = None

    def waiter(self) -> ActivityWaiter:
        # One waiter per sensor instance: it notices a worker process that died (and fails the
        # activity), and what it saw carries over from one poke to the next in poke mode.
        if self._waiter is None or self._waiter.activity_id != self.activity_id:
            self._waiter = self.hook.workspace.activity_waiter(self.activity_id)
        return self._waiter

    def poke(self, context: Any) -> bool:
        activity = self.waiter().poll()
        self.log.info("Activity %s (%s %s)", activity.activity_id, activity.kind, describe(activity))
        if not activity.status.is_terminal:
            return False
        if activity.status is not ActivityStatus.SUCCEEDED:
            raise AirflowException(
                f"Activity {activity.activity_id} ({activity.kind} {activity.target_id}) ended "
                f"{activity.status.value}: {activity.error or 'no error recorded'}"
            )
        return True

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        end_time = time.time() + self.timeout if self.timeout else None
        if self.poke(context):
            return None
        waited = wait_briefly(
            lambda seconds: self.waiter().wait(timeout=seconds, poll_interval=min(self.poke_interval, 2.0)),
            seconds=self.defer_after, end_time=end_time, log=self.log.info,
        )
        if waited and self.poke(context):  # ended while the task waited: no deferral
            return None
        self.log.info("Deferring: the triggerer waits for activity %s", self.activity_id)
        self.defer(
            trigger=AmlActivityTrigger(
                activity_id=self.activity_id, aml_conn_id=self.aml_conn_id, poll_interval=self.poke_interval,
                end_time=end_time, settle=settle_seconds(),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "success":
            raise AirflowException((event or {}).get("message") or "Trigger returned no event")
        self.log.info("%s", event["message"])


class AmlRunSensor(AmlActivitySensor):
    """Wait until a run ends Completed (a run's activity id is its run id)."""

    template_fields: Sequence[str] = ("aml_conn_id", "run_id")
    operator_extra_links = (AmlRunLink(),)

    def __init__(self, *, run_id: str, **kwargs: Any) -> None:
        super().__init__(activity_id=run_id, **kwargs)
        self.run_id = run_id

    def execute(self, context: Any) -> Any:
        self.activity_id = self.run_id  # templates render into run_id after __init__
        AmlRunLink().persist(context, self.hook.run_url(self.run_id))
        return super().execute(context)
