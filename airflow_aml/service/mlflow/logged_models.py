"""MLflow 3's logged models (what ``mlflow.<flavor>.log_model`` creates), kept on their run.

A logged model here always has a source run (``log_model`` inside a run; a model logged outside
any run is refused). Its record is a tag of that run, ``mlflow.loggedModel:<model id>`` -> JSON
(name, status, tags, model type, the params given beyond the run's own, times), and its files are
the run's ``outputs/<name>/`` (``artifact_uri`` ``mlflow-artifacts:/runs/<run id>/outputs/<name>``),
so our SDK sees a logged model as the run's output folder it is. The model id names its run
(``m-<run id>-<random>``), so a model is found from its id alone.

Not kept: metrics linked to a logged model (``log_model`` copies the run's metrics of a step to
the model; the run keeps its own), a logged model's registrations list.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from airflow_aml.entities import RunQuery, RunRecord
from airflow_aml.exceptions import NotFoundError
from airflow_aml.service.mlflow import wire
from airflow_aml.service.mlflow.calls import Handler, MlflowCall, decode_page_token, encode_page_token, key_values
from airflow_aml.service.mlflow.errors import MlflowError
from airflow_aml.service.mlflow.search import matches, parse_filter

MODEL_TAG = wire.MODEL_TAG
STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")


class LoggedModelNotFoundError(NotFoundError):
    pass


def _run_of(model_id: str) -> str:
    parts = model_id.split("-")
    if len(parts) != 3 or parts[0] != "m" or not parts[1]:
        raise LoggedModelNotFoundError(f"Logged model '{model_id}' not found")
    return parts[1]


def load(call: MlflowCall, model_id: str) -> tuple[RunRecord, dict[str, Any]]:
    record = call.store_call("get_run", run_id=_run_of(model_id))
    stored = record.tags.get(MODEL_TAG + model_id)
    if stored is None:
        raise LoggedModelNotFoundError(f"Logged model '{model_id}' not found")
    return record, json.loads(stored)


def _save(call: MlflowCall, run_id: str, model_id: str, model: dict[str, Any]) -> None:
    model["updated"] = int(time.time() * 1000)
    call.store_call("set_run_tags", run_id=run_id, tags={MODEL_TAG + model_id: json.dumps(model, sort_keys=True)})


def model_path(run_id: str, name: str) -> str:
    """The datastore folder of a logged model's files."""
    return f"{wire.artifact_root(run_id)}/{name}"


def logged_model(record: RunRecord, model_id: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "info": {
            "model_id": model_id, "experiment_id": record.experiment, "name": model["name"],
            "creation_timestamp_ms": model["created"], "last_updated_timestamp_ms": model["updated"],
            "artifact_uri": f"mlflow-artifacts:/{model_path(record.run_id, model['name'])}",
            "status": model["status"], "model_type": model.get("model_type", ""), "source_run_id": record.run_id,
            "tags": [{"key": key, "value": value} for key, value in sorted(model["tags"].items())],
        },
        "data": {"params": [{"key": key, "value": value}
                            for key, value in sorted({**record.params, **model["params"]}.items())], "metrics": []},
    }


def models_of(record: RunRecord) -> dict[str, dict[str, Any]]:
    return {key[len(MODEL_TAG):]: json.loads(value) for key, value in record.tags.items() if key.startswith(MODEL_TAG)}


def create_logged_model(call: MlflowCall) -> dict[str, Any]:
    run_id = call.fields.get("source_run_id")
    if not run_id:
        raise MlflowError("A logged model needs a source run here: log it inside a run (mlflow.start_run())")
    name = call.text("name", default="model")
    if "/" in name or name in (".", ".."):
        raise MlflowError(f"Invalid logged model name {name!r}: one folder name")
    record = call.store_call("get_run", run_id=str(run_id))
    experiment = call.fields.get("experiment_id")
    if experiment and wire.experiment_name(str(experiment)) != record.experiment:
        raise MlflowError(f"Run '{run_id}' is not of experiment '{experiment}'")
    params = {key: value for key, value in key_values(call.items("params"), "params").items()
              if record.params.get(key) != value}  # the run's own params are shown from the run
    now = int(time.time() * 1000)
    model = {"name": name, "status": "LOGGED_MODEL_PENDING", "tags": key_values(call.items("tags"), "tags"),
             "params": params, "model_type": str(call.fields.get("model_type") or ""), "created": now}
    model_id = f"m-{record.run_id}-{uuid.uuid4().hex[:12]}"
    _save(call, record.run_id, model_id, model)
    return {"model": logged_model(call.store_call("get_run", run_id=record.run_id), model_id, model)}


def get_logged_model(call: MlflowCall) -> dict[str, Any]:
    model_id = call.text("model_id")
    record, model = load(call, model_id)
    return {"model": logged_model(record, model_id, model)}


def finalize_logged_model(call: MlflowCall) -> dict[str, Any]:
    model_id = call.text("model_id")
    status = call.text("status")
    if status not in STATUSES:
        raise MlflowError(f"Invalid logged model status {status!r}: one of {', '.join(STATUSES)}")
    record, model = load(call, model_id)
    model["status"] = status
    _save(call, record.run_id, model_id, model)
    return {"model": logged_model(record, model_id, model)}


def set_logged_model_tags(call: MlflowCall) -> dict[str, Any]:
    model_id = call.text("model_id")
    record, model = load(call, model_id)
    model["tags"].update(key_values(call.items("tags"), "tags"))
    _save(call, record.run_id, model_id, model)
    return {}


def delete_logged_model_tag(call: MlflowCall) -> dict[str, Any]:
    model_id = call.text("model_id")
    record, model = load(call, model_id)
    model["tags"].pop(call.text("tag_key"), None)
    _save(call, record.run_id, model_id, model)
    return {}


def log_outputs(call: MlflowCall) -> dict[str, Any]:
    """A run's model outputs are the logged models it is the source of: check, keep nothing more."""
    run_id = call.run_id()
    for entry in call.items("models"):
        model_id = str(entry.get("model_id", "")) if isinstance(entry, dict) else ""
        if _run_of(model_id) != run_id:
            raise MlflowError(f"Logged model '{model_id}' is not of run '{run_id}': only a model's source run "
                              "can output it here")
        load(call, model_id)
    call.store_call("set_run_tags", run_id=run_id, tags={})  # the caller must be able to write to the run
    return {}


def search_logged_models(call: MlflowCall) -> dict[str, Any]:
    """The logged models of the named experiments' runs, filtered on their attributes
    (``name = 'model'``, ``source_run_id``, ``model_id``, ``status``), oldest first."""
    clauses = parse_filter(call.fields.get("filter"))
    found = []
    for experiment_id in dict.fromkeys(str(item) for item in call.items("experiment_ids")):
        query = RunQuery(experiment=wire.experiment_name(experiment_id))
        for record in call.store_call("search_runs", workspace=call.workspace, query=query):
            for model_id, model in models_of(record).items():
                values = {"name": model["name"], "model_id": model_id, "source_run_id": record.run_id,
                          "status": model["status"]}
                if matches(clauses, lambda entity, key, values=values: values.get(key)):
                    found.append((model["created"], model_id, logged_model(record, model_id, model)))
    found.sort(key=lambda item: item[:2])
    limit = call.integer("max_results", default=100) or 100
    offset = decode_page_token(call.fields.get("page_token"))
    answer: dict[str, Any] = {"models": [item[2] for item in found[offset : offset + limit]]}
    if offset + limit < len(found):
        answer["next_page_token"] = encode_page_token(offset + limit)
    return answer


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
    ("POST", "/runs/outputs", log_outputs),
]
