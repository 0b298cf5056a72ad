"""MLflow's runs/search: the runs of the named experiments, filtered and ordered with MLflow's
syntax (``search``), paginated with a page token."""

from __future__ import annotations

import math
from typing import Any

from airflow_aml.entities import Metric, RunQuery, RunRecord
from airflow_aml.service.mlflow import wire
from airflow_aml.service.mlflow.calls import Handler, MlflowCall, decode_page_token, encode_page_token
from airflow_aml.service.mlflow.errors import MlflowError
from airflow_aml.service.mlflow.search import Lookup, OrderKey, matches, parse_filter, parse_order_by, sort

MAX_RESULTS = 50000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
DEFAULT_MAX_RESULTS = 1000


def lookup(record: RunRecord, latest: dict[str, Metric]) -> Lookup:
    info = wire.run_info(record)
    tags = wire.run_tags(record)

    def value(entity: str, key: str) -> Any:
        if entity == "metric":
            found = latest.get(key)
            # NaN compares with nothing and sorts nowhere: as if the run lacked the metric.
            return None if found is None or found.value is None or math.isnan(found.value) else found.value
        if entity == "param":
            return record.params.get(key)
        if entity == "tag":
            return tags.get(key)
        return info.get(key)

    return value


def search_runs(call: MlflowCall) -> dict[str, Any]:
    experiment_ids = [str(item) for item in call.items("experiment_ids")]
    clauses = parse_filter(call.fields.get("filter"))
    order: list[OrderKey] = parse_order_by([str(item) for item in call.items("order_by")])
    limit = call.integer("max_results", default=DEFAULT_MAX_RESULTS) or DEFAULT_MAX_RESULTS
    if not 1 <= limit <= MAX_RESULTS:
        raise MlflowError(f"Invalid value for max_results: it must be at most {MAX_RESULTS}, not {limit}")
    if call.fields.get("run_view_type") == "DELETED_ONLY":
        return {}  # runs are never deleted here
    records: list[RunRecord] = []
    for experiment_id in dict.fromkeys(experiment_ids):
        query = RunQuery(experiment=wire.experiment_name(experiment_id))
        records.extend(call.store_call("search_runs", workspace=call.workspace, query=query))
    # The latest value of every metric of every run in one store call (the latest_metrics table),
    # not one full metric history per run.
    latest_of = call.store_call("get_latest_metrics", run_ids=[record.run_id for record in records]) if records else {}
    candidates: list[tuple[RunRecord, dict[str, Metric]]] = [
        (record, {metric.name: metric for metric in latest_of.get(record.run_id, [])}) for record in records
    ]
    found = [item for item in candidates if matches(clauses, lookup(*item))]
    # MLflow's default order, also the tie-break of any order_by: newest start first, then run id.
    found.sort(key=lambda item: item[0].run_id)
    found.sort(key=lambda item: wire.millis(item[0].start_time or item[0].created_at) or 0, reverse=True)
    found = sort(found, order, lambda item: lookup(*item))
    offset = decode_page_token(call.fields.get("page_token"))
    answer: dict[str, Any] = {"runs": [wire.run(record, latest) for record, latest in found[offset : offset + limit]]}
    if offset + limit < len(found):
        answer["next_page_token"] = encode_page_token(offset + limit)
    return answer


ROUTES: list[tuple[str, str, Handler]] = [("POST", "/runs/search", search_runs)]
