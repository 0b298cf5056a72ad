"""Query an experiment's runs, and pick the best one by a metric (optionally gated by a threshold).

This is the "query the experiment; if the metrics do not indicate a desired outcome, loop back"
step of the workflow: ``AmlBestRunOperator`` fails (or skips) when the best value misses the
threshold, ``AmlBestRunBranchOperator`` branches instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from airflow.sdk import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_aml.exceptions import ValidationError
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.links import AmlRunLink
from airflow_aml.operators.base import AmlBaseOperator
from airflow_aml.runs import Run

GOALS = ("maximize", "minimize")


def run_summary(run: Run) -> dict[str, Any]:
    """What the next task needs of a run, as JSON for XCom."""
    record = run.record
    metrics = {k: v for k, v in run.get_metrics().items() if isinstance(v, int | float) and not math.isnan(v)}
    return {
        "run_id": record.run_id, "experiment": record.experiment, "parent_run_id": record.parent_run_id,
        "status": record.status.value, "metrics": metrics, "tags": dict(record.tags), "params": dict(record.params),
    }


def meets(value: float, threshold: float, goal: str) -> bool:
    return value >= threshold if goal == "maximize" else value <= threshold


class AmlQueryRunsOperator(AmlBaseOperator):
    """List runs of an experiment filtered by status, tags and metric conditions.

    :param metric_conditions: e.g. ``["accuracy >= 0.9"]``.
    :param order_by: a metric to order by (``descending`` by default).
    :return: a list of run summaries ``{run_id, status, metrics, tags, params}``.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id", "experiment_name", "status", "tags", "metric_conditions", "parent_run_id",
    )

    def __init__(
        self, *, experiment_name: str, status: str | list[str] | None = None, tags: dict[str, str] | None = None,
        metric_conditions: list[str] | None = None, order_by: str | None = None, descending: bool = True,
        include_children: bool = True, parent_run_id: str | None = None, max_results: int | None = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment_name = experiment_name
        self.status = status
        self.tags = tags
        self.metric_conditions = metric_conditions
        self.order_by = order_by
        self.descending = descending
        self.include_children = include_children
        self.parent_run_id = parent_run_id
        self.max_results = max_results

    def execute(self, context: Any) -> list[dict[str, Any]]:
        try:
            runs = self.hook.workspace.experiment(self.experiment_name).search_runs(
                status=self.status, tags=self.tags, metrics=self.metric_conditions or (), order_by=self.order_by,
                descending=self.descending, include_children=self.include_children,
                parent_run_id=self.parent_run_id or None, max_results=self.max_results,
            )
        except ValidationError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("%d run(s) of %s match", len(runs), self.experiment_name)
        return [run_summary(run) for run in runs]


def select_best_run(
    hook: AmlWorkspaceHook, *, experiment_name: str, metric: str, goal: str, parent_run_id: str | None,
    tags: dict[str, str] | None, threshold: float | None,
) -> tuple[dict[str, Any] | None, bool]:
    """The best completed run's summary (None when no run logged ``metric``) and whether it
    reaches ``threshold``."""
    if goal not in GOALS:
        raise AirflowFailException(f"goal must be one of {GOALS}, not {goal!r}")
    try:
        best = hook.workspace.experiment(experiment_name).best_run(
            metric, goal=goal, parent_run_id=parent_run_id or None, tags=tags
        )
    except ValidationError as exc:
        raise AirflowFailException(str(exc)) from exc
    if best is None:
        return None, False
    summary = run_summary(best)
    value = summary["metrics"][metric]
    summary["metric"], summary["value"] = metric, value
    passed = threshold is None or meets(value, float(threshold), goal)
    return summary, passed


def _select_and_report(task: Any, hook: AmlWorkspaceHook, context: Any) -> tuple[dict[str, Any] | None, bool]:
    summary, passed = select_best_run(
        hook, experiment_name=task.experiment_name, metric=task.metric, goal=task.goal,
        parent_run_id=task.parent_run_id, tags=task.tags, threshold=task.threshold,
    )
    if summary is not None:
        AmlRunLink().persist(context, hook.run_url(summary["run_id"]))
        task.log.info(
            "Best run %s: %s = %s (%s, threshold %s): %s", summary["run_id"], task.metric, summary["value"],
            task.goal, task.threshold, "passed" if passed else "missed",
        )
    return summary, passed


class AmlBestRunOperator(AmlBaseOperator):
    """The best completed run of an experiment (or of one sweep) by ``metric``.

    :param parent_run_id: only this sweep's child runs (e.g. ``"{{ ti.xcom_pull('train') }}"``).
    :param threshold: the best value must reach it (>= when maximizing, <= when minimizing).
    :param on_threshold_miss: ``"fail"`` (default) or ``"skip"`` (downstream tasks are skipped).
    :return: ``{run_id, metric, value, metrics, tags, params, ...}``.
    """

    template_fields: Sequence[str] = ("aml_conn_id", "experiment_name", "metric", "parent_run_id", "threshold", "tags")
    operator_extra_links = (AmlRunLink(),)

    def __init__(
        self, *, experiment_name: str, metric: str, goal: str = "maximize", parent_run_id: str | None = None,
        threshold: float | None = None, on_threshold_miss: str = "fail", tags: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment_name = experiment_name
        self.metric = metric
        self.goal = goal
        self.parent_run_id = parent_run_id
        self.threshold = threshold
        self.on_threshold_miss = on_threshold_miss
        self.tags = tags

    def _select(self, hook: AmlWorkspaceHook, context: Any) -> tuple[dict[str, Any] | None, bool]:
        return _select_and_report(self, hook, context)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.on_threshold_miss not in ("fail", "skip"):
            raise AirflowFailException(f"on_threshold_miss must be 'fail' or 'skip', not {self.on_threshold_miss!r}")
        summary, passed = self._select(self.hook, context)
        if summary is None:
            raise AirflowFailException(
                f"No completed run of experiment {self.experiment_name!r} logged metric {self.metric!r}"
            )
        if not passed:
            message = (
                f"Best run {summary['run_id']}: {self.metric} = {summary['value']} misses the threshold "
                f"{self.threshold} ({self.goal})"
            )
            if self.on_threshold_miss == "skip":
                raise AirflowSkipException(message)
            raise AirflowFailException(message)
        return summary


class AmlBestRunBranchOperator(BaseBranchOperator):
    """Branch on whether the best run reaches ``threshold``; the best run goes to XCom ``best_run``."""

    template_fields: Sequence[str] = ("aml_conn_id", "experiment_name", "metric", "parent_run_id", "threshold", "tags")
    operator_extra_links = (AmlRunLink(),)

    def __init__(
        self, *, experiment_name: str, metric: str, threshold: float,
        follow_task_ids_if_passed: str | Iterable[str], follow_task_ids_if_missed: str | Iterable[str],
        goal: str = "maximize", parent_run_id: str | None = None, tags: dict[str, str] | None = None,
        aml_conn_id: str = AmlWorkspaceHook.default_conn_name, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment_name = experiment_name
        self.metric = metric
        self.threshold = threshold
        self.follow_task_ids_if_passed = follow_task_ids_if_passed
        self.follow_task_ids_if_missed = follow_task_ids_if_missed
        self.goal = goal
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.aml_conn_id = aml_conn_id

    def choose_branch(self, context: Any) -> str | Iterable[str]:
        summary, passed = _select_and_report(self, AmlWorkspaceHook(aml_conn_id=self.aml_conn_id), context)
        context["ti"].xcom_push(key="best_run", value=summary)
        return self.follow_task_ids_if_passed if passed else self.follow_task_ids_if_missed
