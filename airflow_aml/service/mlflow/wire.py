"""Our records as MLflow's JSON (the shapes of ``mlflow/protos/service.proto`` as MLflow's server
writes them): experiments, runs, metrics, run statuses, times in milliseconds.

The mapping: an MLflow experiment is one of our experiments and its ``experiment_id`` is the
experiment's name (names are unique in a workspace and never change, so the id is stable);
``"0"``, the id the MLflow client uses when no experiment is set, stands for experiment
``Default``. An MLflow run is our run, ``run_id`` our run id. A run's artifacts are files of the
run in the workspace's default datastore, under ``runs/<run id>/outputs/`` like every other
output of a run: its ``artifact_uri`` is ``mlflow-artifacts:/runs/<run id>/outputs``, which the
MLflow client resolves against the tracking URI to this service's ``mlflow-artifacts`` routes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from airflow_aml.context import run_prefix
from airflow_aml.entities import ExperimentRecord, Metric, MetricKind, RunRecord, RunStatus

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT = "Default"
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
# A dataset input of a run is a run property (add-only, like MLflow's inputs):
# "mlflow.dataset:<name>:<digest>" -> {"name", "digest", "source_type", "source", "tags"} as JSON.
# Its schema and profile are not kept (they can be large and our SDK shows nothing of them).
DATASET_PROPERTY = "mlflow.dataset:"
# A logged model's record is a tag of its source run (service.mlflow.logged_models): not one of
# the run's tags as MLflow shows them.
MODEL_TAG = "mlflow.loggedModel:"

TO_MLFLOW_STATUS: dict[RunStatus, str] = {
    RunStatus.QUEUED: "SCHEDULED", RunStatus.PREPARING: "SCHEDULED", RunStatus.RUNNING: "RUNNING",
    RunStatus.FINALIZING: "RUNNING", RunStatus.CANCEL_REQUESTED: "RUNNING", RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED", RunStatus.CANCELED: "KILLED",
}
FROM_MLFLOW_STATUS: dict[str, RunStatus] = {
    "RUNNING": RunStatus.RUNNING, "SCHEDULED": RunStatus.QUEUED, "FINISHED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED, "KILLED": RunStatus.CANCELED,
}


def experiment_name(experiment_id: str) -> str:
    return DEFAULT_EXPERIMENT if experiment_id == DEFAULT_EXPERIMENT_ID else experiment_id


def millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def artifact_uri(run_id: str) -> str:
    return f"mlflow-artifacts:/{artifact_root(run_id)}"


def artifact_root(run_id: str) -> str:
    """The datastore folder of a run's MLflow artifacts: its outputs."""
    return f"{run_prefix(run_id)}/outputs"


def experiment(record: ExperimentRecord) -> dict[str, Any]:
    created = millis(record.created_at)
    return {
        "experiment_id": record.name, "name": record.name, "artifact_location": "mlflow-artifacts:/runs",
        "lifecycle_stage": "active", "creation_time": created, "last_update_time": created, "tags": [],
    }


def number(value: float) -> float | str:
    """A double as protobuf's JSON writes it: NaN and the infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric(item: Metric) -> dict[str, Any]:
    value = item.value if item.value is not None else math.nan
    return {"key": item.name, "value": number(value), "timestamp": int(item.timestamp * 1000), "step": item.step}


def latest_metrics(metrics: Iterable[Metric]) -> dict[str, Metric]:
    """Each scalar metric's latest value as MLflow defines it: the highest step, then the latest
    timestamp, then the largest value."""
    latest: dict[str, Metric] = {}
    for item in metrics:
        if item.kind is not MetricKind.SCALAR:
            continue
        current = latest.get(item.name)
        if current is None or _rank(item) > _rank(current):
            latest[item.name] = item
    return latest


def _rank(item: Metric) -> tuple[int, float, float]:
    value = item.value if item.value is not None and not math.isnan(item.value) else -math.inf
    return item.step, item.timestamp, value


def run_tags(record: RunRecord) -> dict[str, str]:
    """The run's tags as MLflow shows them: ours, plus the system tags MLflow's own UI and
    client read (run name, user, parent run) from our run's fields."""
    tags = {key: value for key, value in record.tags.items() if not key.startswith(MODEL_TAG)}
    if record.display_name:
        tags.setdefault(RUN_NAME_TAG, record.display_name)
    tags.setdefault(USER_TAG, record.submitted_by)
    if record.parent_run_id:
        tags.setdefault(PARENT_RUN_TAG, record.parent_run_id)
    return tags


def run_info(record: RunRecord) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": record.run_id, "run_uuid": record.run_id, "experiment_id": record.experiment,
        "run_name": record.tags.get(RUN_NAME_TAG) or record.display_name or "", "user_id": record.submitted_by,
        "status": TO_MLFLOW_STATUS[record.status],
        "start_time": millis(record.start_time or record.created_at),
        "artifact_uri": artifact_uri(record.run_id), "lifecycle_stage": "active",
    }
    if record.end_time is not None:
        info["end_time"] = millis(record.end_time)
    return info


def run(record: RunRecord, latest: Mapping[str, Metric]) -> dict[str, Any]:
    return {
        "info": run_info(record),
        "data": {
            "metrics": [metric(item) for item in latest.values()],
            "params": [{"key": key, "value": value} for key, value in record.params.items()],
            "tags": [{"key": key, "value": value} for key, value in run_tags(record).items()],
        },
        "inputs": dataset_inputs(record),
    }


def dataset_property(entry: Mapping[str, Any]) -> tuple[str, str]:
    """A dataset input of MLflow's log-inputs as our run property (key, value)."""
    dataset = entry.get("dataset")
    if not isinstance(dataset, Mapping) or not isinstance(dataset.get("name"), str) or not dataset.get("digest"):
        raise ValueError("each dataset input needs a dataset with a name and a digest")
    tags = entry.get("tags") or []
    kept = {field: str(dataset.get(field, "")) for field in ("name", "digest", "source_type", "source")}
    kept["tags"] = [{"key": str(tag.get("key")), "value": str(tag.get("value"))} for tag in tags
                    if isinstance(tag, Mapping)]
    return f"{DATASET_PROPERTY}{dataset['name']}:{dataset['digest']}", json.dumps(kept, sort_keys=True)


def dataset_inputs(record: RunRecord) -> dict[str, Any]:
    inputs = []
    for key, value in sorted(record.properties.items()):
        if key.startswith(DATASET_PROPERTY):
            kept = json.loads(value)
            tags = kept.pop("tags", [])
            inputs.append({"tags": tags, "dataset": {**kept, "schema": "", "profile": ""}})
    return {"dataset_inputs": inputs} if inputs else {}
