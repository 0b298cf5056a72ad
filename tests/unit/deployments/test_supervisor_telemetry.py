"""The supervisor's telemetry summing, file rotation included (no processes started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.paths import DESIRED_FILE, TELEMETRY_FILE
from airflow_aml.deployments.supervisor import Supervisor
from airflow_aml.deployments.supervisor import server as server_module
from airflow_aml.deployments.supervisor import telemetry as telemetry_module


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

    monkeypatch.setattr(telemetry_module, "TELEMETRY_ROTATE_BYTES", 10)
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


def test_the_front_socket_lets_asyncio_disable_nagle() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP listeners; without it
    every response through the front waited ~40 ms for a delayed ACK (found by the benchmark)."""
    import socket

    from airflow_aml.deployments.replicas import free_port

    sock = server_module._bind(free_port())
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_totals_resume_after_a_supervisor_restart(supervisor: Supervisor, tmp_path: Path) -> None:
    path = tmp_path / TELEMETRY_FILE
    _lines(path, [200, 200, 500])
    supervisor._collect_telemetry()
    recorded = dict(supervisor._telemetry)
    _lines(path, [200])
    restarted = Supervisor(tmp_path, store=None)
    restarted._resume_telemetry(recorded)
    restarted._collect_telemetry()
    assert restarted._telemetry["requests"] == 4 and restarted._telemetry["status_counts"] == {"200": 3, "500": 1}
    fresh = Supervisor(tmp_path, store=None)
    fresh._resume_telemetry({"requests": 9, "file_offset": 10**9})  # the file is not what was recorded
    fresh._collect_telemetry()
    assert fresh._telemetry["requests"] == 4


def test_each_collection_with_requests_adds_a_point_of_history(
    supervisor: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry_module, "HISTORY_POINTS", 2)
    path = tmp_path / TELEMETRY_FILE
    _lines(path, [200, 500], latency=4.0)
    supervisor._collect_telemetry()
    supervisor._collect_telemetry()  # nothing new: no point
    assert [(p["requests"], p["errors"]) for p in supervisor._telemetry["history"]] == [(2, 1)]
    for statuses in ([200], [200, 200]):
        _lines(path, statuses, latency=8.0)
        supervisor._collect_telemetry()
    history = supervisor._telemetry["history"]
    assert [p["requests"] for p in history] == [3, 5]  # bounded: the oldest point dropped
    assert history[-1]["p99"] == 8.0 and history[0]["t"] <= history[-1]["t"]
