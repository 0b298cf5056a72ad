"""``AmlBuildImageOperator``: build the next version of a scoring image (models + scoring code)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_aml.activities import describe
from airflow_aml.entities import ActivityRecord, ImageStatus
from airflow_aml.exceptions import (
    AmlError,
    AuthorizationError,
    ImageBuildError,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)
from airflow_aml.images.image import Image
from airflow_aml.images.spec import ImageSpec
from airflow_aml.links import AmlImageLink
from airflow_aml.operators.base import deadline, idempotency_key, task_properties
from airflow_aml.operators.durable import AmlDurableOperator
from airflow_aml.references import Reference
from airflow_aml.triggers.settle import DEFAULT_DEFER_AFTER, wait_briefly

# Mistakes in the task's arguments: no retry can fix them.
FAIL_FAST = (ValidationError, NotFoundError, AuthorizationError)
LOG_TAIL_LINES = 25


def model_references(models: Any) -> list[str]:
    """``models`` as ``"name"`` / ``"name:version"`` strings.

    Accepts one reference or a list of them; a dict (the XCom of ``AmlRegisterModelOperator``:
    ``{"name", "version", "id"}``) stands for its ``id``.
    """
    items = models if isinstance(models, list | tuple) else [models]
    refs = []
    for item in items:
        if isinstance(item, Mapping):
            if item.get("id"):
                item = item["id"]
            elif item.get("name"):
                item = f"{item['name']}:{item['version']}" if item.get("version") else item["name"]
            else:
                raise ValidationError(f"A model given as a mapping needs 'id' or 'name': {dict(item)!r}")
        refs.append(str(item).strip())
    return refs


class AmlBuildImageOperator(AmlDurableOperator):
    """Build the next version of image ``image_name`` from model versions and scoring code.

    The spec mirrors ``ImageSpec``: give ``builtin_scorer`` (``"sklearn"``, ``"onnx"``: no code) or
    ``source_directory`` + ``entry_script`` (a script with ``init()`` and ``run()``).

    :param image_name: the image (versions are numbered by the registry).
    :param models: model references, ``"name"`` (its latest version) or ``"name:version"``; also
        the dict XCom of ``AmlRegisterModelOperator``.
    :param source_directory: folder with the scoring script and the files it needs.
    :param entry_script: the scoring script, relative to ``source_directory``.
    :param builtin_scorer: a built-in scorer instead of a script.
    :param convert_to_onnx: with ``builtin_scorer="onnx"``, convert the registered scikit-learn model
        to ONNX while building (checked to predict the same; needs ``airflow-aml[onnx]``).
    :param pip: extra requirement lines (``"scikit-learn==1.5.2"``).
    :param conda_file: a conda environment file whose pip dependencies are installed.
    :param extra_files: files or folders copied next to the scoring code.
    :param base_image: Docker base image (``builder="docker"`` only).
    :param builder: ``"local"`` (a cached virtualenv, served by the local deployment target) or ``"docker"``.
    :param wait_for_completion: build in the task (default), logging progress; False starts the
        build in a detached process and returns at once (status Building).
    :param deferrable: start the build in a detached process and wait in the triggerer (after ``defer_after``).
    :param defer_after: with ``deferrable``, seconds to wait in the task first: a build that ends by
        then (a cached one) never defers.
    :param poll_interval: seconds between two looks of the trigger when deferred (progress is logged as it changes).
    :param timeout: seconds the deferred wait may last; None waits for ever.
    :param durable: keep the build activity's id in Airflow's task state (``ResumableJobMixin``):
        a retry reattaches to a build that goes on in its own process (``deferrable`` or
        ``wait_for_completion=False``) and returns a finished one at once. A build in the task
        itself dies with a crashed worker; the retry then builds the next attempt.
    :return: ``{"name", "version", "id", "location", "builder"}``.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id",
        "image_name", "models", "source_directory", "entry_script", "builtin_scorer", "pip", "conda_file",
        "extra_files", "base_image", "tags", "description", "builder",
    )
    template_fields_renderers = {"tags": "json", "pip": "json", "models": "json"}
    operator_extra_links = (AmlImageLink(),)
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        image_name: str,
        models: Sequence[str | Mapping[str, Any]] | str | Mapping[str, Any],
        source_directory: str | None = None,
        entry_script: str | None = None,
        builtin_scorer: str | None = None,
        convert_to_onnx: bool = False,
        pip: Sequence[str] | None = None,
        conda_file: str | None = None,
        extra_files: Sequence[str] | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        base_image: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        builder: str = "local",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        defer_after: float = DEFAULT_DEFER_AFTER,
        poll_interval: float = 5.0,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_name = image_name
        self.models = models
        self.source_directory = source_directory
        self.entry_script = entry_script
        self.builtin_scorer = builtin_scorer
        self.convert_to_onnx = convert_to_onnx
        self.pip = pip
        self.conda_file = conda_file
        self.extra_files = extra_files
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.base_image = base_image
        self.description = description
        self.tags = tags
        self.builder = builder
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.defer_after = defer_after
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._end_time: float | None = None

    # ------------------------------------------------------------------ configuration
    def build_spec(self) -> ImageSpec:
        """The ImageSpec of the rendered arguments; ValidationError naming the problem."""
        data: dict[str, Any] = {
            "models": model_references(self.models),
            "source_directory": self.source_directory or None,
            "entry_script": self.entry_script or None,
            "builtin_scorer": self.builtin_scorer or None,
            "convert_to_onnx": bool(self.convert_to_onnx),
            "pip": [str(line) for line in self.pip or []],
            "conda_file": self.conda_file or None,
            "extra_files": [str(path) for path in self.extra_files or []],
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "base_image": self.base_image or None,
            "description": self.description or "",
        }
        return ImageSpec.coerce({k: v for k, v in data.items() if v is not None}, image=str(self.image_name))

    # ------------------------------------------------------------------ execution
    def execute(self, context: Any) -> dict[str, Any]:
        self._end_time = deadline(self.timeout)
        return super().execute(context)  # durable: a retry reattaches to the build an earlier try started

    def submit_job(self, context: Any) -> str:
        """Validate and create the version (or find the earlier try's by the idempotency key);
        the id of its build activity. Waiting in the task builds it here and now."""
        wait_here = self.wait_for_completion and not self.deferrable
        try:
            spec = self.build_spec()
            self.log.info("Building image %s (%s builder) from %s", self.image_name, self.builder, spec.models)
            image = Image.create(
                self.hook.workspace, self.image_name, spec, builder=self.builder,
                tags={**(self.tags or {}), **task_properties(context)}, wait=wait_here,
                idempotency_key=idempotency_key(context), on_progress=self._log_progress,
            )
        except FAIL_FAST as exc:
            raise AirflowFailException(str(exc)) from exc
        except ImageBuildError as exc:
            raise AirflowException(self._failure_message(str(exc), exc.image_id)) from exc
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc
        return image.activity.activity_id

    def follow(self, activity_id: str, context: Any) -> dict[str, Any]:
        ws = self.hook.workspace
        image = Image.get(ws, *Reference.parse_id(ws.get_activity(activity_id).target_id, "image"))
        AmlImageLink().persist(context, image_url(self.hook, image.name, image.version))
        if image.status is ImageStatus.BUILDING:
            self.log.info("Image %s is building (activity %s)", image.id, activity_id)
            if not self.wait_for_completion:
                return self._result(image)
            def wait(seconds: float | None) -> None:
                image.wait_for_completion(timeout=seconds, raise_on_error=False, on_progress=self._log_progress)

            if not self.deferrable:  # reattached to a build in its own process: follow it here
                try:
                    wait(None if self._end_time is None else max(0.0, self._end_time - time.time()))
                except WaitTimeoutError as exc:
                    raise AirflowException(str(exc)) from None
            elif not wait_briefly(wait, seconds=self.defer_after, end_time=self._end_time, log=self.log.info):
                self.defer_until_done(activity_id, poll_interval=self.poll_interval, end_time=self._end_time)
        return self._finish(image)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        target = (event or {}).get("target_id")
        try:
            self.check_event(event)
        except AirflowException as exc:
            image_id = target if target and ":" in str(target) else None
            raise AirflowException(self._failure_message(str(exc), image_id)) from exc
        return self._finish(Image.get(self.hook.workspace, *Reference.parse_id(target, "image")))

    # ------------------------------------------------------------------ helpers
    def _finish(self, image: Image) -> dict[str, Any]:
        image.refresh()
        if image.status is ImageStatus.FAILED:
            raise AirflowException(self._failure_message(
                f"Image {image.id} failed to build: {image.error or 'no error recorded'}", image.id,
            ))
        self.log.info("Image %s built (%s): %s", image.id, image.record.builder, image.location)
        return self._result(image)

    @staticmethod
    def _result(image: Image) -> dict[str, Any]:
        return {
            "name": image.name, "version": image.version, "id": image.id, "location": image.location,
            "builder": image.record.builder,
        }

    def _failure_message(self, message: str, image_id: str | None) -> str:
        """``message`` and the end of the build log of ``image_id`` ("name:version")."""
        if not image_id:
            return message
        try:
            record = Image.get(self.hook.workspace, *Reference.parse_id(image_id, "image")).record
        except AmlError:
            return message
        tail = "\n".join((record.build_log_tail or "").splitlines()[-LOG_TAIL_LINES:])
        return f"{message}\nBuild log (end):\n{tail}" if tail else message

    def _log_progress(self, activity: ActivityRecord) -> None:
        self.log.info("Image %s", describe(activity))


def image_url(hook: Any, name: str, version: int) -> str:
    return f"{hook.settings.ui_base_url}/workspaces/{hook.workspace.name}/images/{name}/versions/{version}"
