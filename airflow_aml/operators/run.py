"""``AmlSubmitRunOperator``: submit a training run (optionally a sweep of child runs) and wait."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_aml.activities import describe
from airflow_aml.entities import ActivityRecord, LogChunk, RunStatus
from airflow_aml.exceptions import (
    AmlError,
    ComputeTargetNotFoundError,
    RunConfigurationError,
    ValidationError,
    WaitTimeoutError,
)
from airflow_aml.links import AmlRunLink
from airflow_aml.operators.base import AmlBaseOperator, idempotency_key
from airflow_aml.runconfig import RunConfiguration, check_source_directory
from airflow_aml.runs import Run


class AmlSubmitRunOperator(AmlBaseOperator):
    """Submit ``source_directory`` as a run of ``experiment_name`` and (by default) wait for it.

    :param experiment_name: the experiment (created when unknown).
    :param source_directory: folder snapshotted and run on the compute target.
    :param run_config: a ``RunConfiguration``, a dict, or the path of a YAML file; or leave it out
        and give ``script``.
    :param script: the script to run (shortcut for ``run_config={"script": ...}``).
    :param arguments: script arguments (override those of ``run_config``).
    :param compute_target: compute target name (overrides ``run_config``'s ``target``).
    :param sweep: ``{"grid": {"C": [0.1, 1]}, "max_concurrent": 2}``: run each combination as a
        child run, passing ``--C <value>`` to the script.
    :param tags: run tags.
    :param wait_for_completion: wait for the run to end (default); False returns at once.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status checks while waiting.
    :param timeout: seconds to wait before failing (and canceling the run); None waits for ever.
    :param reuse_completed_run: a retry returns the run an earlier try completed (default). Set
        False to train again when the task is cleared.
    :return: the run id.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id",
        "experiment_name", "source_directory", "run_config", "script", "arguments", "compute_target",
        "sweep", "tags",
    )
    template_fields_renderers = {"run_config": "json", "sweep": "json", "tags": "json"}
    operator_extra_links = (AmlRunLink(),)
    ui_color = "#cfe8fc"

    def __init__(
        self,
        *,
        experiment_name: str,
        source_directory: str,
        run_config: RunConfiguration | dict[str, Any] | str | None = None,
        script: str | None = None,
        arguments: Sequence[Any] | None = None,
        compute_target: str | None = None,
        sweep: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: float | None = None,
        reuse_completed_run: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment_name = experiment_name
        self.source_directory = source_directory
        self.run_config = run_config
        self.script = script
        self.arguments = arguments
        self.compute_target = compute_target
        self.sweep = sweep
        self.tags = tags
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.reuse_completed_run = reuse_completed_run
        self._run_id: str | None = None

    # ------------------------------------------------------------------ configuration
    def build_run_config(self) -> RunConfiguration:
        """The effective run configuration; every mistake fails here, before anything exists."""
        if (self.run_config is None) == (self.script is None):
            raise ValidationError(f"Task {self.task_id!r}: give exactly one of run_config= or script=")
        try:
            source = check_source_directory(self.source_directory)
        except RunConfigurationError as exc:
            raise RunConfigurationError(f"Task {self.task_id!r}: {exc}") from None
        if self.run_config is None:
            data: dict[str, Any] = {"script": self.script}
        elif isinstance(self.run_config, RunConfiguration):
            data = self.run_config.to_dict()
        elif isinstance(self.run_config, dict):
            data = dict(self.run_config)
        else:  # a YAML path, absolute or relative to the source directory
            path = Path(self.run_config)
            if not path.is_absolute() and not path.exists():
                path = source / path
            data = RunConfiguration.from_yaml(path).to_dict()
        if self.arguments is not None:
            data["arguments"] = [str(a) for a in self.arguments]
        if self.compute_target is not None:
            data["target"] = self.compute_target
        if self.sweep is not None:
            data["sweep"] = self.sweep
        return RunConfiguration.from_dict(data, source=f"run configuration of task {self.task_id!r}")

    # ------------------------------------------------------------------ execution
    def execute(self, context: Any) -> str | None:
        try:
            config = self.build_run_config()
            run = self._find_or_submit(config, context)
        except (ValidationError, ComputeTargetNotFoundError) as exc:
            raise AirflowFailException(str(exc)) from exc  # bad input: retrying cannot help
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc
        self._run_id = run.id
        AmlRunLink().persist(context, self.hook.run_url(run.id))
        if not self.wait_for_completion:
            return run.id
        if run.status.is_terminal:
            return self._finish(run)
        if self.deferrable:
            self.defer_until_done(run.id, poll_interval=self.poll_interval, timeout=self.timeout)
        return self._wait(run)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        self._run_id = (event or {}).get("target_id") or self._run_id
        try:
            self.check_event(event)
        except AirflowException:
            if event and event.get("status") == "timeout" and event.get("target_id"):
                self.hook.get_run(event["target_id"]).cancel()
            raise
        return self._finish(self.hook.get_run(event["target_id"]))  # type: ignore[index]

    def on_kill(self) -> None:
        if self._run_id:
            self.log.info("Task killed: canceling run %s", self._run_id)
            self.hook.get_run(self._run_id).cancel()

    # ------------------------------------------------------------------ helpers
    def _find_or_submit(self, config: RunConfiguration, context: Any) -> Run:
        """Submit the run; a retry (same idempotency key) reattaches to the earlier try's run while
        it goes on, reuses it when it completed (unless ``reuse_completed_run=False``), or starts
        a linked new attempt. The SDK decides; this only says which in the task log."""
        properties = {"airflow.dag_id": context["ti"].dag_id, "airflow.task_id": self.task_id}
        return self.hook.workspace.experiment(self.experiment_name).submit(
            self.source_directory, config, tags=self.tags, properties=properties,
            idempotency_key=idempotency_key(context), reuse_completed=self.reuse_completed_run,
            attempt_tag="airflow.attempt", log=self.log.info,
        )

    def _wait(self, run: Run) -> str:
        """Wait in this task: the run's log and progress go to the task log as they come."""
        try:
            run.wait_for_completion(timeout=self.timeout, poll_interval=self.poll_interval, raise_on_error=False,
                                    on_log=self._log_chunk, on_progress=self._log_progress)
        except WaitTimeoutError:
            run.cancel()
            raise AirflowException(f"Run {run.id} did not finish within {self.timeout} s; canceled it") from None
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc
        return self._finish(run)

    def _log_chunk(self, chunk: LogChunk) -> None:
        for line in chunk.text.splitlines():
            self.log.info("[%s] %s", chunk.stream, line)

    def _log_progress(self, activity: ActivityRecord) -> None:
        self.log.info("Run %s", describe(activity))

    def _finish(self, run: Run) -> str:
        record = run.record
        if record.status is not RunStatus.COMPLETED:
            raise AirflowException(f"Run {record.run_id} ended {record.status.value}: {record.error or 'no error'}")
        self.log.info("Run %s completed; metrics: %s", record.run_id, _short(run.get_metrics()))
        return record.run_id


def _short(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
