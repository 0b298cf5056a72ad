"""MLflow's experiment calls on our experiments: get-by-name, create, get, search."""

from __future__ import annotations

from typing import Any

from airflow_aml.exceptions import AlreadyExistsError, ExperimentNotFoundError
from airflow_aml.names import validate_name
from airflow_aml.service.mlflow import wire
from airflow_aml.service.mlflow.calls import Handler, MlflowCall, decode_page_token, encode_page_token
from airflow_aml.service.mlflow.errors import MlflowError
from airflow_aml.service.mlflow.search import matches, parse_filter

MAX_EXPERIMENTS_PER_PAGE = 50000  # MLflow's MAX_EXPERIMENTS_LISTED_PER_PAGE


def get_experiment_by_name(call: MlflowCall) -> dict[str, Any]:
    record = call.store_call("get_experiment", workspace=call.workspace, name=call.text("experiment_name"))
    return {"experiment": wire.experiment(record)}


def get_experiment(call: MlflowCall) -> dict[str, Any]:
    name = wire.experiment_name(call.text("experiment_id"))
    record = call.store_call("get_experiment", workspace=call.workspace, name=name)
    return {"experiment": wire.experiment(record)}


def create_experiment(call: MlflowCall) -> dict[str, Any]:
    name = call.text("name")
    validate_name("experiment", name)
    try:
        call.store_call("get_experiment", workspace=call.workspace, name=name)
    except ExperimentNotFoundError:
        record = call.store_call("get_or_create_experiment", workspace=call.workspace, name=name)
        return {"experiment_id": record.name}
    raise AlreadyExistsError(f"Experiment '{name}' already exists in workspace {call.workspace!r}")


def search_experiments(call: MlflowCall) -> dict[str, Any]:
    """Active experiments (ours are never deleted), filtered on ``name`` (MLflow's
    ``attributes.name``), by name; tag filters match nothing (our experiments have no tags)."""
    clauses = parse_filter(call.fields.get("filter"))
    records = call.store_call("list_experiments", workspace=call.workspace)
    found = [wire.experiment(record) for record in sorted(records, key=lambda record: record.name)
             if matches(clauses, lambda entity, key, record=record: record.name if key == "name" else None)]
    limit = call.integer("max_results", default=1000) or 1000
    if not 1 <= limit <= MAX_EXPERIMENTS_PER_PAGE:
        raise MlflowError(f"max_results must be between 1 and {MAX_EXPERIMENTS_PER_PAGE}, not {limit}")
    offset = decode_page_token(call.fields.get("page_token"))
    answer: dict[str, Any] = {"experiments": found[offset : offset + limit]}
    if offset + limit < len(found):
        answer["next_page_token"] = encode_page_token(offset + limit)
    return answer


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("GET", "/experiments/get", get_experiment),
    ("POST", "/experiments/create", create_experiment),
    ("POST", "/experiments/search", search_experiments),
]
