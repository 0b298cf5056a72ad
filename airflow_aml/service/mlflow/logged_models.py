"""MLflow 3's logged models. Not stored yet: ``log_model`` is not served (its create call answers
404). Search is served because the MLflow client searches logged models whenever it resolves a
``runs:/<run id>/<path>`` URI (a run's artifacts may be a logged model's), and the right answer
here is that no logged model matches."""

from __future__ import annotations

from typing import Any

from airflow_aml.service.mlflow.calls import Handler, MlflowCall


def search_logged_models(call: MlflowCall) -> dict[str, Any]:
    # Still a call on the workspace: a caller without a role in it is refused, as for runs.
    call.store_call("list_experiments", workspace=call.workspace)
    return {"models": []}


ROUTES: list[tuple[str, str, Handler]] = [("POST", "/logged-models/search", search_logged_models)]
