"""``AmlDeploymentSensor``: wait until a web service is Healthy.

It follows the deployment's current activity (create, update, restore), then checks the state.
Works in ``mode="poke"``, ``mode="reschedule"`` and ``deferrable=True``: deferred (after
``defer_after`` seconds in the task), it waits on the activity through the shared
``AmlActivityTrigger`` (or, when no activity runs but the service is not Healthy yet, a timer of
at least the settle time) and looks again.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from airflow_aml.activities import ActivityWaiter
from airflow_aml.deployments.deployment import Deployment
from airflow_aml.entities import ActivityRecord, ActivityStatus, DeploymentState
from airflow_aml.exceptions import DeploymentNotFoundError, NotFoundError
from airflow_aml.links import AmlDeploymentLink
from airflow_aml.processes import this_host
from airflow_aml.sensors.base import AmlBaseSensor
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds, wait_briefly


class AmlDeploymentSensor(AmlBaseSensor):
    """Wait until deployment ``deployment_name`` is Healthy.

    Fails with the recorded error when its latest activity failed, or when the deployment is
    Failed, being deleted, or does not exist. An Unhealthy service is waited for (its supervisor
    restarts replicas that stop).

    :param deployment_name: the web service.
    """

    template_fields: Sequence[str] = ("aml_conn_id", "deployment_name")
    operator_extra_links = (AmlDeploymentLink(),)
    ui_color = "#e8daef"

    def __init__(self, *, deployment_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self._waiter: ActivityWaiter | None = None

    # ------------------------------------------------------------------ checking
    def inspect(self) -> tuple[bool, ActivityRecord | None]:
        """(Healthy?, the activity still running, if any). Raises when waiting cannot help."""
        name = str(self.deployment_name)
        try:
            deployment = Deployment.get(self.hook.workspace, name)
        except DeploymentNotFoundError:
            raise AirflowException(
                f"Deployment {name!r} does not exist in workspace {self.hook.workspace.name!r}"
            ) from None
        activity = None
        if deployment.record.activity_id:
            # The SDK's waiter, kept while the activity is the same one: it also notices a
            # supervisor that died while carrying it out (and fails the activity).
            if self._waiter is None or self._waiter.activity_id != deployment.record.activity_id:
                self._waiter = deployment.waiter()
            try:
                activity = self._waiter.poll()
            except NotFoundError:
                activity = None
        if activity is not None:
            self.log.info("Deployment %s: %s %s %.0f%% %s", name, activity.kind, activity.status.value,
                          activity.progress * 100, activity.message)
            if not activity.status.is_terminal:
                return False, activity
            if activity.status is not ActivityStatus.SUCCEEDED:
                raise AirflowException(
                    f"Deployment {name}: {activity.kind} ended {activity.status.value}: "
                    f"{activity.error or deployment.error or activity.message or 'no error recorded'}"
                )
        state = deployment.state
        supervised_here = (deployment.record.runtime.get("supervisor") or {}).get("host") == this_host()
        if state is not DeploymentState.DELETING and supervised_here and not deployment.supervisor_alive():
            # Nothing serves and nothing will change until someone restarts it: waiting cannot help.
            raise AirflowException(
                f"Deployment {name}'s supervisor is not running (state on record: {state.value}); "
                "`airflow-aml deployments restore` starts it again"
            )
        if state is DeploymentState.HEALTHY:
            self.log.info("Deployment %s is Healthy: %s serves %s", name, deployment.scoring_uri, deployment.image_id)
            return True, None
        if state is DeploymentState.FAILED:
            raise AirflowException(f"Deployment {name} is Failed: {deployment.error or 'no error recorded'}")
        if state is DeploymentState.DELETING:
            raise AirflowException(f"Deployment {name} is being deleted")
        self.log.info("Deployment %s is %s%s: waiting", name, state.value,
                      f" ({deployment.error})" if deployment.error else "")
        return False, None

    def poke(self, context: Any) -> bool:
        return self.inspect()[0]

    # ------------------------------------------------------------------ execution
    def execute(self, context: Any) -> Any:
        AmlDeploymentLink().persist(
            context,
            f"{self.hook.settings.ui_base_url}/workspaces/{self.hook.workspace.name}/deployments/{self.deployment_name}",
        )
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(time.time() + self.timeout if self.timeout else None)

    def execute_complete(self, context: Any, event: Any = None, end_time: float | None = None) -> None:
        if isinstance(event, dict):  # from AmlActivityTrigger; a timer's event is its moment
            if event.get("status") == "timeout":
                raise AirflowSensorTimeout(event.get("message") or "Timed out")
            if event.get("status") != "success":
                raise AirflowException(event.get("message") or f"Activity ended with {event!r}")
        elif event is None:
            raise AirflowException("Trigger returned no event")
        return self._check_or_defer(end_time)

    def _check_or_defer(self, end_time: float | None) -> None:
        healthy, activity = self.inspect()
        if healthy:
            return None
        if activity is not None and self._waiter is not None:
            waiter, every = self._waiter, min(self.poke_interval, 2.0)
            waited = wait_briefly(lambda seconds: waiter.wait(timeout=seconds, poll_interval=every),
                                  seconds=self.defer_after, end_time=end_time, log=self.log.info)
            if waited:  # the activity ended while the task waited: look again, maybe no deferral
                healthy, activity = self.inspect()
                if healthy:
                    return None
        if end_time is not None and time.time() >= end_time:
            raise AirflowSensorTimeout(f"Deployment {self.deployment_name} not Healthy within {self.timeout} s")
        settle = settle_seconds()
        if activity is not None:
            trigger: Any = AmlActivityTrigger(
                activity_id=activity.activity_id, aml_conn_id=self.aml_conn_id, poll_interval=self.poke_interval,
                end_time=end_time, settle=settle,
            )
        else:  # nothing running to follow (an Unhealthy service recovering): look again later
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            # Never sooner than the settle time, even at the deadline (then the next look times out).
            delay = max(float(self.poke_interval), settle)
            if end_time is not None:
                delay = max(settle, min(delay, end_time - time.time()))
            trigger = TimeDeltaTrigger(datetime.timedelta(seconds=delay))
        self.log.info("Deferring: deployment %s is not Healthy yet", self.deployment_name)
        self.defer(trigger=trigger, method_name="execute_complete", kwargs={"end_time": end_time})
