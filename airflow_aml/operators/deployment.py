"""Web services: ``AmlDeployWebServiceOperator`` (create or update) and ``AmlDeleteWebServiceOperator``."""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_aml.activities import describe
from airflow_aml.deployments.deployment import DEFAULT_TIMEOUT, Deployment
from airflow_aml.entities import ActivityRecord, ActivityStatus, DeploymentState
from airflow_aml.exceptions import (
    AmlError,
    AuthorizationError,
    ConflictError,
    DeploymentError,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)
from airflow_aml.images.image import Image
from airflow_aml.links import AmlDeploymentLink
from airflow_aml.names import validate_name
from airflow_aml.operators.base import AmlBaseOperator, deadline, idempotency_key, task_properties
from airflow_aml.operators.durable import AmlDurableOperator
from airflow_aml.triggers.settle import DEFAULT_DEFER_AFTER, wait_briefly

# Mistakes in the task's arguments (unknown or unbuilt image, wrong target or builder, bad
# config, a deployment on another target): no retry can fix them.
FAIL_FAST = (ValidationError, NotFoundError, ConflictError, AuthorizationError)
LOG_TAIL_LINES = 15


def image_reference(image: Any) -> str | Image:
    """``image`` as ``"name"`` / ``"name:version"`` (or an Image as is).

    Accepts the XCom of ``AmlBuildImageOperator`` (``{"name", "version", "id", ...}``), also when
    it was rendered as text (a DAG without ``render_template_as_native_obj``).
    """
    if isinstance(image, Image):
        return image
    if isinstance(image, str) and image.strip().startswith("{"):
        try:
            image = ast.literal_eval(image.strip())
        except (ValueError, SyntaxError):
            raise ValidationError(f"image {image!r} is neither 'name[:version]' nor an image dict") from None
    if isinstance(image, Mapping):
        if image.get("id"):
            return str(image["id"])
        if image.get("name"):
            return f"{image['name']}:{image['version']}" if image.get("version") else str(image["name"])
        raise ValidationError(f"An image given as a mapping needs 'id' or 'name': {dict(image)!r}")
    if not isinstance(image, str) or not image.strip():
        raise ValidationError(f"image must be 'name', 'name:version' or an image dict, not {image!r}")
    return image.strip()


def deployment_url(hook: Any, name: str) -> str:
    return f"{hook.settings.ui_base_url}/workspaces/{hook.workspace.name}/deployments/{name}"


class AmlDeployWebServiceOperator(AmlDurableOperator):
    """Deploy ``image`` as web service ``deployment_name``: create it, or update it when it exists.

    An update rolls out (the old replicas serve until the new ones are ready); an update that
    changes nothing on a Healthy service is a no-op, so re-running a DAG is cheap. The service's
    keys never go to XCom: read them with ``Deployment.get_keys()`` (``AmlWorkspaceHook``).

    :param deployment_name: the web service.
    :param image: ``"name"`` (latest version), ``"name:version"``, or the XCom of ``AmlBuildImageOperator``.
    :param target: ``"local"`` (processes of a local image) or ``"docker"``.
    :param config: ``DeploymentConfig`` fields, e.g. ``{"replicas": 2}`` or ``{"autoscale": {...}}``; on
        an update only the fields given change.
    :param tags: deployment tags.
    :param wait_for_completion: wait until the create/update ends (default); False returns once it started.
    :param deferrable: wait in the triggerer instead of holding a worker slot (after ``defer_after``).
    :param defer_after: with ``deferrable``, seconds to wait in the task first: a create/update that
        ends by then (most local ones) never defers.
    :param poll_interval: seconds between two looks of the trigger when deferred (progress is logged as it changes).
    :param timeout: seconds to wait for the deployment; None waits for ever.
    :param durable: keep the create/update activity's id in Airflow's task state
        (``ResumableJobMixin``): a retry after a crashed worker reattaches to it (the deployment's
        supervisor carries on) or returns at once when it succeeded (default True).
    :return: ``{"name", "scoring_uri", "state", "image_id", "swagger_uri"}``.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id", "deployment_name", "image", "target", "config", "tags", "description",
    )
    template_fields_renderers = {"config": "json", "tags": "json"}
    operator_extra_links = (AmlDeploymentLink(),)
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        deployment_name: str,
        image: str | Mapping[str, Any],
        target: str = "local",
        config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        defer_after: float = DEFAULT_DEFER_AFTER,
        poll_interval: float = 5.0,
        timeout: float | None = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.image = image
        self.target = target
        self.config = config
        self.tags = tags
        self.description = description
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.defer_after = defer_after
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._end_time: float | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        self._end_time = deadline(self.timeout)
        return super().execute(context)  # durable: a retry reattaches to the create/update an earlier try started

    def submit_job(self, context: Any) -> str:
        """Validate and start the create or update (or find the earlier try's by the idempotency
        key); the id of its activity. The deployment's own supervisor carries it out."""
        name = str(self.deployment_name)
        try:
            image = image_reference(self.image)
            if self.config is not None and not isinstance(self.config, Mapping):
                raise ValidationError(f"config must be a mapping of DeploymentConfig fields, not {self.config!r}")
            self.log.info("Deploying %s as web service %s on the %s target", image, name, self.target)
            deployment = Deployment.deploy(
                self.hook.workspace, name, image, target=str(self.target),
                config=dict(self.config) if self.config else None,
                tags={**(self.tags or {}), **task_properties(context)},
                description=self.description or "", wait=False, timeout=self.timeout,
                idempotency_key=idempotency_key(context),
            )
        except FAIL_FAST as exc:
            raise AirflowFailException(str(exc)) from exc
        except DeploymentError as exc:
            raise AirflowException(self._with_logs(str(exc), name)) from exc
        except (AmlError, TimeoutError) as exc:
            raise AirflowException(str(exc)) from exc
        return deployment.activity.activity_id

    def follow(self, activity_id: str, context: Any) -> dict[str, Any]:
        ws = self.hook.workspace
        activity = ws.get_activity(activity_id)
        deployment = Deployment.get(ws, activity.target_id)
        AmlDeploymentLink().persist(context, deployment_url(self.hook, deployment.name))
        self.log.info("Deployment %s: %s %s (activity %s)", deployment.name, activity.kind, activity.status.value,
                      activity.activity_id)
        if not self.wait_for_completion:
            return self._result(deployment)
        if self.deferrable and not activity.status.is_terminal:
            waited = wait_briefly(lambda seconds: self._wait(deployment, seconds),
                                  seconds=self.defer_after, end_time=self._end_time, log=self.log.info)
            if not waited:
                self.defer_until_done(activity_id, poll_interval=self.poll_interval, end_time=self._end_time)
        elif not activity.status.is_terminal:
            remaining = None if self._end_time is None else max(0.0, self._end_time - time.time())
            self._wait(deployment, remaining, fail_on_timeout=True)
        return self._finish(deployment, activity_id)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        name = str(self.deployment_name)
        try:
            self.check_event(event)
        except AirflowException as exc:
            raise AirflowException(self._with_logs(str(exc), name)) from exc
        return self._finish(Deployment.get(self.hook.workspace, name), event["activity_id"])  # type: ignore[index]

    # ------------------------------------------------------------------ helpers
    def _wait(self, deployment: Deployment, timeout: float | None, *, fail_on_timeout: bool = False) -> None:
        """Follow the deployment's activity until it ends, logging its progress (the SDK's waiter
        also notices a supervisor that died: it fails the activity with its log's end)."""
        try:
            deployment.wait_for_deployment(timeout=timeout, raise_on_error=False, on_progress=self._log_progress)
        except WaitTimeoutError as exc:
            if not fail_on_timeout:
                raise
            raise AirflowException(str(exc)) from None

    def _log_progress(self, activity: ActivityRecord) -> None:
        self.log.info("Deployment %s (%s)", describe(activity), activity.kind)

    def _finish(self, deployment: Deployment, activity_id: str | None) -> dict[str, Any]:
        ws = self.hook.workspace
        if activity_id:
            activity = ws.get_activity(activity_id)
            if activity.status is not ActivityStatus.SUCCEEDED:
                raise AirflowException(self._with_logs(
                    f"Deployment {deployment.name}: {activity.kind} {activity.status.value}: "
                    f"{activity.error or activity.message}", deployment.name,
                ))
        deployment.refresh()
        if deployment.state is DeploymentState.FAILED:
            raise AirflowException(self._with_logs(
                f"Deployment {deployment.name} is Failed: {deployment.error or 'no error recorded'}", deployment.name,
            ))
        if deployment.state is not DeploymentState.HEALTHY:
            self.log.warning("Deployment %s is %s: %s", deployment.name, deployment.state.value, deployment.error)
        self.log.info("Deployment %s serves %s at %s (%s)", deployment.name, deployment.image_id,
                      deployment.scoring_uri, deployment.state.value)
        return self._result(deployment)

    @staticmethod
    def _result(deployment: Deployment) -> dict[str, Any]:
        return {
            "name": deployment.name, "scoring_uri": deployment.scoring_uri, "state": deployment.state.value,
            "image_id": deployment.image_id, "swagger_uri": deployment.swagger_uri,
        }

    def _with_logs(self, message: str, name: str) -> str:
        try:
            logs = Deployment.get(self.hook.workspace, name).get_logs(tail=LOG_TAIL_LINES)
        except Exception:
            return message
        return f"{message}\nDeployment logs (end):\n{logs}"


class AmlDeleteWebServiceOperator(AmlBaseOperator):
    """Delete web service ``deployment_name`` (its replicas, keys and files). Idempotent: a
    deployment that does not exist is a success.

    :param timeout: seconds to wait for the replicas to stop; None waits for ever.
    :return: ``{"name", "deleted"}`` (``deleted`` False when there was nothing to delete).
    """

    template_fields: Sequence[str] = ("aml_conn_id", "deployment_name")
    ui_color = "#e8daef"

    def __init__(self, *, deployment_name: str, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.timeout = timeout

    def execute(self, context: Any) -> dict[str, Any]:
        name = str(self.deployment_name)
        try:
            validate_name("deployment", name)
            existed = Deployment.delete_if_exists(self.hook.workspace, name, wait=True, timeout=self.timeout)
        except (ValidationError, AuthorizationError) as exc:
            raise AirflowFailException(str(exc)) from exc
        except (AmlError, TimeoutError) as exc:
            raise AirflowException(str(exc)) from exc
        if existed:
            self.log.info("Deleted deployment %s", name)
        else:
            self.log.info("Deployment %s does not exist: nothing to delete", name)
        return {"name": name, "deleted": existed}
