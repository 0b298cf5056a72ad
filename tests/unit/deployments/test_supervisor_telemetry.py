"""The supervisor's telemetry summing, file rotation included (no processes started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_aml.deployments import supervisor as supervisor_module
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.paths import DESIRED_FILE, TELEMETRY_FILE
from airflow_aml.deployments.supervisor import Supervisor


def _lines(path: Path, statuses: list[int], latency: float = 5.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for status in statuses:
            handle.write(json.dumps({"time": 1.0, "request_id": "r", "status": status, "latency_ms": latency,
                                     "input": None, "output": None}) + "\n")


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    (tmp_path / DESIRED_FILE).write_text(json.dumps({
        "workspace": "ws", "name": "svc", "target": "local", "generation": 1, "port": 5001,
        "config": DeploymentConfig(telemetry=False).model_dump(mode="json"), "image": {},
    }))
    return Supervisor(tmp_path, store=None)


def test_requests_are_summed_across_collections_and_rotations(
    supervisor: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / TELEMETRY_FILE
    _lines(path, [200, 200, 401, 500])
    with path.open("a") as handle:
        handle.write('{"status": 200, "lat')  # a line the front is still writing: not read yet
    supervisor._collect_telemetry()
    telemetry = supervisor._telemetry
    assert (telemetry["requests"], telemetry["errors"], telemetry["client_errors"]) == (4, 1, 1)
    assert telemetry["status_counts"] == {"200": 2, "401": 1, "500": 1}
    assert telemetry["latency_ms"]["p50"] == 5.0

    monkeypatch.setattr(supervisor_module, "TELEMETRY_ROTATE_BYTES", 10)
    with path.open("a") as handle:
        handle.write('ency_ms": 7.0, "input": null, "output": null}\n')
    _lines(path, [200])
    supervisor._collect_telemetry()  # reads to the end, then ...
    supervisor._collect_telemetry()  # ... rotates: the rest of the old file, then a new one
    assert (tmp_path / (TELEMETRY_FILE + ".1")).is_file() and not path.exists()
    _lines(path, [200, 503])
    supervisor._collect_telemetry()
    telemetry = supervisor._telemetry
    assert telemetry["requests"] == 8 and telemetry["errors"] == 2
    assert telemetry["status_counts"] == {"200": 5, "401": 1, "500": 1, "503": 1}
