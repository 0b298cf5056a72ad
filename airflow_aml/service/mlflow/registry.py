"""MLflow's model registry calls on our model registry: ``mlflow.register_model`` registers the
next version of one of our models (``Workspace.register_model`` from the run's files: copied,
hashed, versioned as every registration is).

A registered model exists in our registry from its first version: ``registered-models/create``
checks the name and the caller's right to write and stores nothing. Sources: a logged model
(``model_id`` or ``models:/<model id>``), ``runs:/<run id>/<path>`` or
``mlflow-artifacts:/runs/<run id>/outputs/<path>`` (a run's output file or folder). A version's
MLflow source and logged model are kept in its properties; stages and aliases are not served.
"""

from __future__ import annotations

from typing import Any

from airflow_aml.entities import ModelRecord
from airflow_aml.exceptions import ModelNotFoundError
from airflow_aml.models import Model
from airflow_aml.names import validate_name
from airflow_aml.roles import Action
from airflow_aml.service.mlflow import logged_models, wire
from airflow_aml.service.mlflow.calls import Handler, MlflowCall, key_values
from airflow_aml.service.mlflow.errors import RESOURCE_ALREADY_EXISTS, MlflowError

SOURCE_PROPERTY = "mlflow.source"
MODEL_ID_PROPERTY = "mlflow.model_id"


def model_version(record: ModelRecord) -> dict[str, Any]:
    created = wire.millis(record.created_at)
    return {
        "name": record.name, "version": str(record.version), "creation_timestamp": created,
        "last_updated_timestamp": created, "user_id": record.created_by, "current_stage": "None",
        "description": record.description, "source": record.properties.get(SOURCE_PROPERTY, ""),
        "run_id": record.run_id or "", "status": "READY", "run_link": "", "aliases": [],
        "tags": [{"key": key, "value": value} for key, value in sorted(record.tags.items())],
        "model_id": record.properties.get(MODEL_ID_PROPERTY, ""),
    }


def _registered_model(name: str, latest: ModelRecord | None, principal: str) -> dict[str, Any]:
    created = wire.millis(latest.created_at) if latest else None
    answer: dict[str, Any] = {"name": name, "user_id": latest.created_by if latest else principal,
                              "description": "", "tags": [], "aliases": []}
    if latest is not None:
        answer.update(creation_timestamp=created, last_updated_timestamp=created,
                      latest_versions=[model_version(latest)])
    return answer


def _latest(call: MlflowCall, name: str) -> ModelRecord | None:
    try:
        return call.store_call("get_model_version", workspace=call.workspace, name=name)  # type: ignore[no-any-return]
    except ModelNotFoundError:
        return None


def _require_registration(call: MlflowCall) -> None:
    # Registering is no call a run token may make (as create_model_version on the store routes).
    call.access.check_store_call("create_model_version", {})
    call.access.context(call.workspace).require(Action.WRITE)


def create_registered_model(call: MlflowCall) -> dict[str, Any]:
    name = call.text("name")
    validate_name("model", name)
    _require_registration(call)
    if _latest(call, name) is not None:
        raise MlflowError(f"Registered Model (name={name}) already exists.", RESOURCE_ALREADY_EXISTS)
    return {"registered_model": _registered_model(name, None, call.access.principal)}


def get_registered_model(call: MlflowCall) -> dict[str, Any]:
    name = call.text("name")
    latest = _latest(call, name)
    if latest is None:
        raise ModelNotFoundError(f"Registered Model with name={name} not found")
    return {"registered_model": _registered_model(name, latest, call.access.principal)}


def _run_files(call: MlflowCall, source: str, model_id: str) -> tuple[str, str]:
    """(run id, path in the run) of what a version is registered from."""
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/").split("/")[0]
    if model_id:
        record, model = logged_models.load(call, model_id)
        return record.run_id, f"outputs/{model['name']}"
    for scheme in ("runs:/", "mlflow-artifacts:/runs/"):
        if source.startswith(scheme):
            run_id, _, rest = source.removeprefix(scheme).partition("/")
            if scheme == "mlflow-artifacts:/runs/":
                if not rest.startswith("outputs/"):
                    break
                rest = rest.removeprefix("outputs/")
            if run_id and rest:
                return run_id, f"outputs/{rest.strip('/')}"
    raise MlflowError(f"Unsupported model source {source!r}: use a logged model, runs:/<run id>/<path> or "
                      "mlflow-artifacts:/runs/<run id>/outputs/<path>")


def create_model_version(call: MlflowCall) -> dict[str, Any]:
    name = call.text("name")
    source = str(call.fields.get("source") or "")
    model_id = str(call.fields.get("model_id") or "")
    _require_registration(call)
    run_id, run_path = _run_files(call, source, model_id)
    if not model_id:  # runs:/<run>/<name> of a logged model of that run: that model
        record = call.store_call("get_run", run_id=run_id)
        model_id = next((found for found, model in sorted(logged_models.models_of(record).items())
                         if f"outputs/{model['name']}" == run_path), "")
    given_run = call.fields.get("run_id")
    if given_run and given_run != run_id:
        raise MlflowError(f"The source {source!r} is not of run '{given_run}'")
    properties = {SOURCE_PROPERTY: source or f"runs:/{run_id}/{run_path.removeprefix('outputs/')}"}
    if model_id:
        properties[MODEL_ID_PROPERTY] = model_id
    model = Model.register(call.access.context(call.workspace), name, run_id=run_id, run_path=run_path,
                           tags=key_values(call.items("tags"), "tags"),
                           description=str(call.fields.get("description") or ""), properties=properties)
    return {"model_version": model_version(model.record)}


def get_model_version(call: MlflowCall) -> dict[str, Any]:
    version = call.integer("version")
    if version is None:
        raise MlflowError("Missing value for required parameter 'version'")
    record = call.store_call("get_model_version", workspace=call.workspace, name=call.text("name"), version=version)
    return {"model_version": model_version(record)}


def get_model_version_download_uri(call: MlflowCall) -> dict[str, Any]:
    """The registered copy (not the run's files, which may change): read through the artifacts proxy."""
    version = call.integer("version")
    if version is None:
        raise MlflowError("Missing value for required parameter 'version'")
    record = call.store_call("get_model_version", workspace=call.workspace, name=call.text("name"), version=version)
    return {"artifact_uri": f"mlflow-artifacts:/{record.path}"}


def get_latest_versions(call: MlflowCall) -> dict[str, Any]:
    latest = _latest(call, call.text("name"))
    return {"model_versions": [model_version(latest)]} if latest else {}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("GET", "/model-versions/get-download-uri", get_model_version_download_uri),
]
