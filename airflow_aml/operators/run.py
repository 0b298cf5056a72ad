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
from airflow_aml.operators.base import deadline, idempotency_key, task_properties
from airflow_aml.operators.durable import AmlDurableOperator
from airflow_aml.operators.query import GOALS
from airflow_aml.operators.sweep import child_label, scalar_metrics, summary_lines
from airflow_aml.runconfig import RunConfiguration, check_source_directory
from airflow_aml.runs import Run
from airflow_aml.triggers.settle import DEFAULT_DEFER_AFTER, wait_briefly


class AmlSubmitRunOperator(AmlDurableOperator):
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
    :param deferrable: wait in the triggerer instead of holding a worker slot (after ``defer_after``).
    :param defer_after: with ``deferrable``, seconds to wait in the task first: a run that ends by
        then never defers (a deferral costs a new task process and a settle time: README).
    :param poll_interval: seconds between status checks while waiting.
    :param timeout: seconds to wait before failing (and canceling the run); None waits for ever.
    :param reuse_completed_run: a retry returns the run an earlier try completed (default). Set
        False to train again when the task is cleared.
    :param primary_metric: for a sweep, the metric that names the best child run in the task log.
    :param goal: ``"maximize"`` (default) or ``"minimize"`` ``primary_metric``.
    :param durable: keep the run's id in Airflow's task state (``ResumableJobMixin``): a retry
        after a crashed worker reattaches to the run, which trains on in its own supervisor
        (default True; False: the idempotency key alone finds it).
    :return: the run id.

    A sweep's task log shows every child run's lines prefixed with the child (``[<run id> C=0.1]``),
    then a table of the children and the best child's metrics.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id",
        "experiment_name", "source_directory", "run_config", "script", "arguments", "compute_target",
        "sweep", "tags", "primary_metric", "goal",
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
        defer_after: float = DEFAULT_DEFER_AFTER,
        poll_interval: float = 5.0,
        timeout: float | None = None,
        reuse_completed_run: bool = True,
        primary_metric: str | None = None,
        goal: str = "maximize",
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
        self.defer_after = defer_after
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.reuse_completed_run = reuse_completed_run
        self.primary_metric = primary_metric
        self.goal = goal
        self._run_id: str | None = None
        self._end_time: float | None = None

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
        if self.goal not in GOALS:
            raise AirflowFailException(f"Task {self.task_id!r}: goal must be one of {GOALS}, not {self.goal!r}")
        self._end_time = deadline(self.timeout)
        return super().execute(context)  # durable: a retry reattaches to the run an earlier try started

    def submit_job(self, context: Any) -> str:
        """Validate and submit (or find the earlier try's run by the idempotency key); its id,
        which is also its activity's."""
        try:
            config = self.build_run_config()
            run = self._find_or_submit(config, context)
        except (ValidationError, ComputeTargetNotFoundError) as exc:
            raise AirflowFailException(str(exc)) from exc  # bad input: retrying cannot help
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc
        return run.id

    def is_job_succeeded(self, status: str) -> bool:
        # reuse_completed_run=False: a completed run is not this try's result; train again.
        return self.reuse_completed_run and super().is_job_succeeded(status)

    def follow(self, activity_id: str, context: Any) -> str:
        run = self.hook.get_run(activity_id)
        self._run_id = run.id
        AmlRunLink().persist(context, self.hook.run_url(run.id))
        if not self.wait_for_completion:
            return run.id
        positions: dict[str, int] = {}
        if not run.status.is_terminal and self.deferrable:
            if not wait_briefly(lambda seconds: self._wait_for(run, seconds, positions),
                                seconds=self.defer_after, end_time=self._end_time, log=self.log.info):
                # Where the log stopped goes along, so the resumed task shows only the rest.
                self.defer_until_done(run.id, poll_interval=self.poll_interval, end_time=self._end_time,
                                      kwargs={"log_positions": positions})
        elif not run.status.is_terminal:
            self._wait(run, positions)
        return self._finish(run, positions)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, log_positions: dict[str, int] | None = None,
    ) -> str:
        self._run_id = (event or {}).get("target_id") or self._run_id
        try:
            self.check_event(event)
        except AirflowException:
            if event and event.get("target_id"):
                run = self.hook.get_run(event["target_id"])
                self._stream(run, dict(log_positions or {}))
                if event.get("status") == "timeout":
                    run.cancel()
            raise
        return self._finish(self.hook.get_run(event["target_id"]), dict(log_positions or {}))  # type: ignore[index]

    def on_kill(self) -> None:
        if self._run_id:
            self.log.info("Task killed: canceling run %s", self._run_id)
            self.hook.get_run(self._run_id).cancel()

    # ------------------------------------------------------------------ helpers
    def _find_or_submit(self, config: RunConfiguration, context: Any) -> Run:
        """Submit the run; a retry (same idempotency key) reattaches to the earlier try's run while
        it goes on, reuses it when it completed (unless ``reuse_completed_run=False``), or starts
        a linked new attempt. The SDK decides; this only says which in the task log."""
        properties = {**task_properties(context), "airflow.task_id": self.task_id}
        return self.hook.workspace.experiment(self.experiment_name).submit(
            self.source_directory, config, tags=self.tags, properties=properties,
            idempotency_key=idempotency_key(context), reuse_completed=self.reuse_completed_run,
            attempt_tag="airflow.attempt", log=self.log.info,
        )

    def _wait_for(self, run: Run, timeout: float | None, positions: dict[str, int]) -> None:
        """The SDK's wait; the run's log (and its children's) and progress go to the task log."""
        run.wait_for_completion(timeout=timeout, poll_interval=self.poll_interval, raise_on_error=False,
                                on_log=self._log_chunk, on_child_log=self._log_child_chunk,
                                log_positions=positions, on_progress=self._log_progress)

    def _wait(self, run: Run, positions: dict[str, int]) -> None:
        """Wait in this task until the run ends or the timeout (then cancel it)."""
        try:
            self._wait_for(run, self.timeout, positions)
        except WaitTimeoutError:
            run.cancel()
            raise AirflowException(f"Run {run.id} did not finish within {self.timeout} s; canceled it") from None
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc

    def _stream(self, run: Run, positions: dict[str, int]) -> None:
        """What the run logged while the task was deferred (or since the last look)."""
        run.stream_logs(on_log=self._log_chunk, on_child_log=self._log_child_chunk, log_positions=positions)

    def _log_chunk(self, chunk: LogChunk) -> None:
        for line in chunk.text.splitlines():
            self.log.info("[%s] %s", chunk.stream, line)

    def _log_child_chunk(self, child: Run, chunk: LogChunk) -> None:
        label = child_label(child)
        for line in chunk.text.splitlines():
            self.log.info("[%s] [%s] %s", label, chunk.stream, line)

    def _log_progress(self, activity: ActivityRecord) -> None:
        self.log.info("Run %s", describe(activity))

    def _finish(self, run: Run, positions: dict[str, int]) -> str:
        self._stream(run, positions)  # the last lines, or all of them when the wait was elsewhere
        record = run.record
        children = run.get_children()
        if children:
            for line in summary_lines(run, children, primary_metric=self.primary_metric or None, goal=self.goal):
                self.log.info("%s", line)
        if record.status is not RunStatus.COMPLETED:
            raise AirflowException(f"Run {record.run_id} ended {record.status.value}: {record.error or 'no error'}")
        if children:
            self.log.info("Sweep %s completed", record.run_id)
        else:
            self.log.info("Run %s completed; metrics: %s", record.run_id, scalar_metrics(run))
        return record.run_id
