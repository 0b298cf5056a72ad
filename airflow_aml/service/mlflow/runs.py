"""MLflow's run calls on our runs: create, update, get, log-metric, log-parameter, set-tag,
delete-tag, log-batch (with MLflow's limits), metrics get-history. Search is in ``run_search``."""

from __future__ import annotations

import time
from typing import Any

from airflow_aml.entities import Metric, RunStatus
from airflow_aml.service.mlflow import wire
from airflow_aml.service.mlflow.calls import Handler, MlflowCall, decode_page_token, encode_page_token, key_values
from airflow_aml.service.mlflow.errors import NOT_IMPLEMENTED, MlflowError

# MLflow's limits of one log-batch (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_HISTORY_PAGE = 25000  # what MLflow's server hands out per get-history page at most


def create_run(call: MlflowCall) -> dict[str, Any]:
    experiment = wire.experiment_name(call.text("experiment_id", default=wire.DEFAULT_EXPERIMENT_ID))
    tags = key_values(call.items("tags"), "tags")
    # The client's mlflow.user is its machine's login; the run's submitter is the token's principal
    # (wire.run_tags shows it as mlflow.user). A nested run names its parent in a tag: ours is a field.
    tags.pop(wire.USER_TAG, None)
    parent = tags.pop(wire.PARENT_RUN_TAG, None) or None
    name = call.fields.get("run_name") or tags.get(wire.RUN_NAME_TAG) or None
    if name is not None:
        tags[wire.RUN_NAME_TAG] = str(name)
    record = call.store_call(
        "create_run", workspace=call.workspace, experiment=experiment, submitted_by=call.access.principal,
        parent_run_id=parent, display_name=name, tags=tags, status=RunStatus.RUNNING,
    )
    return {"run": wire.run(record, {})}


def update_run(call: MlflowCall) -> dict[str, Any]:
    run_id = call.run_id()
    status = call.fields.get("status")
    if status:
        if status not in wire.FROM_MLFLOW_STATUS:
            raise MlflowError(f"Invalid run status {status!r}: one of {', '.join(wire.FROM_MLFLOW_STATUS)}")
        if not _owned_by_its_compute_target(call, run_id):
            call.store_call("update_run_status", run_id=run_id, status=wire.FROM_MLFLOW_STATUS[status])
    if call.fields.get("run_name"):
        call.store_call("set_run_tags", run_id=run_id, tags={wire.RUN_NAME_TAG: str(call.fields["run_name"])})
    return {"run_info": wire.run_info(call.store_call("get_run", run_id=run_id))}


def _owned_by_its_compute_target(call: MlflowCall, run_id: str) -> bool:
    """A script launched by one of our compute targets ends its run through its supervisor, which
    still uploads outputs and records the exit code: the script's own ``mlflow.end_run()`` (its
    run token's call) must not end the run first. Anyone else's status change is made."""
    if not call.access.identity.is_run_token:
        return False
    return bool(call.store_call("get_run", run_id=run_id).compute_target)


def get_run(call: MlflowCall) -> dict[str, Any]:
    run_id = call.run_id()
    record = call.store_call("get_run", run_id=run_id)
    latest = wire.latest_metrics(call.store_call("get_metrics", run_id=run_id))
    return {"run": wire.run(record, latest)}


def _metric(call: MlflowCall, entry: Any) -> Metric:
    if not isinstance(entry, dict):
        raise MlflowError("Invalid metric: expected an object with key, value, timestamp, step")
    one = MlflowCall(call.access, call.workspace, entry)
    timestamp = one.integer("timestamp")
    return Metric(
        name=one.text("key"), value=one.number("value"), step=one.integer("step", default=0) or 0,
        timestamp=time.time() if timestamp is None else timestamp / 1000,
    )


def log_metric(call: MlflowCall) -> dict[str, Any]:
    call.store_call("log_metric", run_id=call.run_id(), metric=_metric(call, call.fields))
    return {}


def log_param(call: MlflowCall) -> dict[str, Any]:
    value = call.fields.get("value")
    if value is None:
        raise MlflowError("Missing value for required parameter 'value'")
    call.store_call("log_params", run_id=call.run_id(), params={call.text("key"): str(value)})
    return {}


def set_tag(call: MlflowCall) -> dict[str, Any]:
    value = call.fields.get("value")
    if value is None:
        raise MlflowError("Missing value for required parameter 'value'")
    call.store_call("set_run_tags", run_id=call.run_id(), tags={call.text("key"): str(value)})
    return {}


def delete_tag(call: MlflowCall) -> dict[str, Any]:
    call.store_call("delete_run_tags", run_id=call.run_id(), keys=[call.text("key")])
    return {}


def log_batch(call: MlflowCall) -> dict[str, Any]:
    """Params, then metrics, then tags, as MLflow's server writes them; each kind is one store
    call (atomic), the three together are not."""
    run_id = call.run_id()
    metrics, params, tags = call.items("metrics"), call.items("params"), call.items("tags")
    if len(metrics) > MAX_METRICS_PER_BATCH:
        raise MlflowError(f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. "
                          f"Got {len(metrics)} metrics.")
    if len(params) + len(tags) > MAX_PARAMS_TAGS_PER_BATCH:
        raise MlflowError(f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} params and "
                          f"tags combined. Got {len(params)} params and {len(tags)} tags.")
    if len(metrics) + len(params) + len(tags) > MAX_ENTITIES_PER_BATCH:
        raise MlflowError(f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params "
                          "and tags in total.")
    if params:
        call.store_call("log_params", run_id=run_id, params=key_values(params, "params"))
    # A metric naming a logged model is log_model's copy of the run's own metric of that step
    # (logged models keep no metrics here): the run has it already.
    metrics = [entry for entry in metrics if not (isinstance(entry, dict) and entry.get("model_id"))]
    if metrics:
        call.store_call("log_batch", run_id=run_id, metrics=[_metric(call, entry) for entry in metrics])
    if tags:
        call.store_call("set_run_tags", run_id=run_id, tags=key_values(tags, "tags"))
    return {}


def log_inputs(call: MlflowCall) -> dict[str, Any]:
    """Dataset inputs (what autologging logs of the training data), kept as run properties;
    logged-model inputs are not served (no logged models here)."""
    if call.items("models"):
        raise MlflowError("Logged-model inputs are not supported by this server", NOT_IMPLEMENTED)
    properties = {}
    for entry in call.items("datasets"):
        if not isinstance(entry, dict):
            raise MlflowError("Invalid dataset input: expected an object")
        try:
            key, value = wire.dataset_property(entry)
        except ValueError as exc:
            raise MlflowError(f"Invalid dataset input: {exc}") from None
        properties[key] = value
    if properties:
        call.store_call("add_run_properties", run_id=call.run_id(), properties=properties)
    return {}


def get_metric_history(call: MlflowCall) -> dict[str, Any]:
    key = call.text("metric_key")
    history = [wire.metric(item) for item in call.store_call("get_metrics", run_id=call.run_id(), names=[key])
               if item.name == key]
    limit = call.integer("max_results", default=MAX_HISTORY_PAGE) or MAX_HISTORY_PAGE
    if not 1 <= limit <= MAX_HISTORY_PAGE:
        raise MlflowError(f"max_results must be between 1 and {MAX_HISTORY_PAGE}, not {limit}")
    offset = decode_page_token(call.fields.get("page_token"))
    answer: dict[str, Any] = {"metrics": history[offset : offset + limit]}
    if offset + limit < len(history):
        answer["next_page_token"] = encode_page_token(offset + limit)
    return answer


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/runs/create", create_run),
    ("POST", "/runs/update", update_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/log-inputs", log_inputs),
    ("GET", "/metrics/get-history", get_metric_history),
]
