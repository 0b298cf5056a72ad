"""``AmlRegisterModelOperator``: register a model version from a run's outputs or a path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_aml.assets import model_asset, model_asset_uri
from airflow_aml.exceptions import AmlError, ModelNotFoundError, ValidationError
from airflow_aml.links import AmlModelLink
from airflow_aml.operators.base import AmlBaseOperator, idempotency_key, task_properties
from airflow_aml.operators.query import GOALS, meets


class AmlRegisterModelOperator(AmlBaseOperator):
    """Register the next version of ``model_name``.

    Give exactly one source: ``run_id`` (+ ``run_path``, default ``outputs``), ``model_path`` (a
    local file or folder) or ``datastore_path``. Registering from a run copies the run's latest
    scalar metrics into the version's properties (``metric.<name>``).

    :param compare_metric: register only when the run's value of this metric beats the latest
        registered version's (``goal`` says which way); otherwise the task is skipped. A first
        version is always registered.
    :param asset_workspace: the workspace name in the emitted asset's URI (``aml://<ws>/models/<name>``).
    :return: ``{"name", "version", "id", "run_id"}``.
    """

    template_fields: Sequence[str] = (
        "aml_conn_id",
        "model_name", "run_id", "run_path", "model_path", "datastore_path", "tags", "properties", "description",
        "compare_metric",
    )
    template_fields_renderers = {"tags": "json", "properties": "json"}
    operator_extra_links = (AmlModelLink(),)
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        model_name: str,
        run_id: str | None = None,
        run_path: str = "outputs",
        model_path: str | None = None,
        datastore_path: str | None = None,
        tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
        description: str = "",
        compare_metric: str | None = None,
        goal: str = "maximize",
        emit_asset: bool = True,
        asset_workspace: str = "default",
        **kwargs: Any,
    ) -> None:
        if emit_asset and "{{" not in model_name:
            # Outlets must be known when the DAG is parsed, so only a literal name can have one.
            outlets = list(kwargs.pop("outlets", None) or [])
            outlets.append(model_asset(model_name, asset_workspace))
            kwargs["outlets"] = outlets
        super().__init__(**kwargs)
        self.model_name = model_name
        self.run_id = run_id
        self.run_path = run_path
        self.model_path = model_path
        self.datastore_path = datastore_path
        self.tags = tags
        self.properties = properties
        self.description = description
        self.compare_metric = compare_metric
        self.goal = goal
        self.emit_asset = emit_asset
        self.asset_workspace = asset_workspace

    def execute(self, context: Any) -> dict[str, Any]:
        if self.goal not in GOALS:
            raise AirflowFailException(f"goal must be one of {GOALS}, not {self.goal!r}")
        ws = self.hook.workspace
        run_id = self.run_id or None
        properties = dict(self.properties or {})
        try:
            if run_id:
                run = ws.get_run(run_id)
                metrics = {k: v for k, v in run.get_metrics().items() if isinstance(v, int | float)}
                properties.update({f"metric.{k}": repr(float(v)) for k, v in metrics.items()})
                if self.compare_metric:
                    self._skip_unless_better(metrics)
            source: dict[str, Any] = (
                {"run_id": run_id, "run_path": self.run_path} if run_id
                else {"path": self.model_path or None, "datastore_path": self.datastore_path or None}
            )
            model = ws.register_model(
                self.model_name, **source, tags={**(self.tags or {}), **task_properties(context)},
                properties=properties, description=self.description,
                idempotency_key=idempotency_key(context),
            )
        except ValidationError as exc:
            raise AirflowFailException(str(exc)) from exc
        except AmlError as exc:
            raise AirflowException(str(exc)) from exc
        self.log.info("Registered model %s version %d (sha256 %s)", model.name, model.version, model.record.sha256)
        AmlModelLink().persist(context, self.hook.model_url(model.name, model.version))
        self._annotate_asset_event(context, model.name, model.version, run_id, ws.name)
        return {"name": model.name, "version": model.version, "id": model.id, "run_id": run_id}

    def _annotate_asset_event(
        self, context: Any, name: str, version: int, run_id: str | None, workspace: str
    ) -> None:
        """Put the version into the event of this model's asset, if the task declares it."""
        uri = model_asset_uri(name, self.asset_workspace)
        for outlet in self.outlets:
            if getattr(outlet, "uri", None) == uri:
                if workspace != self.asset_workspace:
                    self.log.warning(
                        "Asset %s names workspace %r but the model went to %r; set asset_workspace=",
                        uri, self.asset_workspace, workspace,
                    )
                context["outlet_events"][outlet].extra = {
                    "version": version, "model_id": f"{name}:{version}", "run_id": run_id, "workspace": workspace,
                }

    def _skip_unless_better(self, metrics: dict[str, float]) -> None:
        metric = self.compare_metric
        if metric not in metrics:
            raise AirflowFailException(f"Run {self.run_id} did not log metric {metric!r} (compare_metric)")
        candidate = float(metrics[metric])
        try:
            current = self.hook.workspace.get_model(self.model_name)
        except ModelNotFoundError:
            self.log.info("No version of %s yet: registering the first", self.model_name)
            return
        held = current.record.properties.get(f"metric.{metric}")
        if held is None:
            self.log.info("Version %d has no %s: registering the candidate", current.version, metric)
            return
        if candidate != float(held) and meets(candidate, float(held), self.goal):
            self.log.info("%s %s beats version %d's %s: registering", metric, candidate, current.version, held)
            return
        reason = (f"Candidate {metric} = {candidate} does not beat {self.model_name} version {current.version} "
                  f"({held}, {self.goal}); not registering")
        # Logged here too: Airflow shows a skip's message only inside the collapsed "Post Execute" group.
        self.log.info("%s", reason)
        raise AirflowSkipException(reason)
