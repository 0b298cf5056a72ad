"""What every airflow-aml operator shares: the hook, the idempotency key, deferral."""

from __future__ import annotations

import hashlib
import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds


def deadline(timeout: float | None) -> float | None:
    """``timeout`` seconds from now as an absolute deadline (epoch seconds), None for none."""
    return None if timeout is None else time.time() + float(timeout)


def idempotency_key(context: Any) -> str:
    """The same for every try of one task instance, different for every other one.

    Stored on what the task creates, so that a retry (or, rarely, a second concurrent copy of the
    task) finds the run or model version the first try made instead of making another.
    """
    ti = context["ti"]
    raw = f"{ti.dag_id}\x1f{ti.task_id}\x1f{ti.run_id}\x1f{getattr(ti, 'map_index', -1)}"
    return "af-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def task_properties(context: Any) -> dict[str, str]:
    """The task instance that created a record, as properties on it: lets views of a DAG run or
    a task instance (Airflow's pages) find the runs it created."""
    ti = context["ti"]
    return {"airflow.dag_id": ti.dag_id, "airflow.task_id": ti.task_id, "airflow.run_id": str(ti.run_id),
            "airflow.map_index": str(getattr(ti, "map_index", -1))}


class AmlBaseOperator(BaseOperator):
    """Base of the provider's operators: owns the hook (lazily) and the deferral plumbing."""

    def __init__(self, *, aml_conn_id: str = AmlWorkspaceHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aml_conn_id = aml_conn_id

    @cached_property
    def hook(self) -> AmlWorkspaceHook:
        return AmlWorkspaceHook(aml_conn_id=self.aml_conn_id)

    def defer_until_done(
        self, activity_id: str, *, poll_interval: float, end_time: float | None,
        method_name: str = "execute_complete", kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Hand the wait to the triggerer. The trigger holds its event until the deferral has
        settled (``triggers/settle.py``), so the task never resumes into Airflow's race."""
        self.log.info("Deferring: the triggerer waits for activity %s", activity_id)
        self.defer(
            trigger=AmlActivityTrigger(
                activity_id=activity_id, aml_conn_id=self.aml_conn_id, poll_interval=poll_interval,
                end_time=end_time, settle=settle_seconds(),
            ),
            method_name=method_name,
            kwargs=kwargs,
        )

    @staticmethod
    def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
        """Turn a trigger event into its payload, or raise with the trigger's message."""
        if not event:
            raise AirflowException("Trigger returned no event")
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"Activity ended with {event!r}")
        return event
