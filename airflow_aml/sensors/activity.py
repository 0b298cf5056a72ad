"""Sensors that wait for an activity (``AmlActivitySensor``) or a run (``AmlRunSensor``).

Both work in ``mode="poke"``, ``mode="reschedule"`` and ``deferrable=True`` (the shared
``AmlActivityTrigger``); the task log shows the activity's progress while waiting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowException

from airflow_aml.activities import ActivityWaiter, describe
from airflow_aml.entities import ActivityStatus
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.links import AmlRunLink
from airflow_aml.triggers.activity import AmlActivityTrigger


class AmlActivitySensor(BaseSensorOperator):
    """Wait until an activity ends; fail if it ends in anything but Succeeded.

    :param activity_id: the activity (a run's activity id is its run id).
    """

    template_fields: Sequence[str] = ("aml_conn_id", "activity_id")

    def __init__(
        self,
        *,
        activity_id: str,
        aml_conn_id: str = AmlWorkspaceHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.activity_id = activity_id
        self.aml_conn_id = aml_conn_id
        self.deferrable = deferrable
        self._waiter: ActivityWaiter | None = None

    @cached_property
    def hook(self) -> AmlWorkspaceHook:
        return AmlWorkspaceHook(aml_conn_id=self.aml_conn_id)

    def poke(self, context: Any) -> bool:
        # One waiter per sensor instance: it notices a worker process that died (and fails the
        # activity), and what it saw carries over from one poke to the next in poke mode.
        if self._waiter is None or self._waiter.activity_id != self.activity_id:
            self._waiter = self.hook.workspace.activity_waiter(self.activity_id)
        activity = self._waiter.poll()
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
        if self.poke(context):
            return None
        self.defer(
            trigger=AmlActivityTrigger(
                activity_id=self.activity_id, aml_conn_id=self.aml_conn_id, poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout if self.timeout else None,
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
