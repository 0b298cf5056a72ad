"""The real server: ``python -m airflow_aml.runtime.scoring`` in a subprocess, over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_aml.runtime.scoring import generate_key, hash_key
from tests.unit.runtime.scoring.conftest import ROW, SCORE_PY, BundleFactory

REPO = Path(__file__).resolve().parents[4]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "airflow_aml.runtime.scoring", *args], stdout=handle, stderr=subprocess.STDOUT,
            env=env, cwd=REPO,
        )


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready within {timeout} s:\n{log.read_text()}")


@pytest.fixture
def server(make_bundle: BundleFactory, tmp_path: Path) -> Iterator[tuple[str, Path, str, str, Path]]:
    """A server on a free port with key auth and telemetry: (base url, config, primary, secondary, telemetry)."""
    primary, secondary = generate_key(), generate_key()
    telemetry = tmp_path / "telemetry.jsonl"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "primary_key_hash": hash_key(primary), "secondary_key_hash": hash_key(secondary),
        "telemetry_path": str(telemetry), "sample_rate": 1.0, "max_request_bytes": 4096,
    }))
    port = _free_port()
    log = tmp_path / "server.log"
    process = _start(["--bundle", str(make_bundle(script=SCORE_PY)), "--host", "127.0.0.1", "--port", str(port),
                      "--config", str(config), "--log-level", "warning"], log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, process, log)
        yield base, config, primary, secondary, telemetry
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"the server did not stop on SIGTERM:\n{log.read_text()}") from None


@pytest.mark.slow
def test_real_server_scores_over_http_and_rotates_keys(server: tuple[str, Path, str, str, Path]) -> None:
    base, config, primary, secondary, _ = server
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post("/score", json={"data": [ROW]}, headers={"Authorization": f"Bearer {primary}",
                                                                          "x-request-id": "req-1"})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": ["setosa"]}
        assert response.headers["x-request-id"] == "req-1"
        assert client.post("/score", json={"data": [ROW]}).status_code == 401

        # A streamed (chunked) body over max_request_bytes, over a real socket.
        chunks = iter([b'{"data": [', b"[1.0, 2.0, 3.0, 4.0]," * 300, b"[1, 2, 3, 4]]}"])
        too_big = client.post("/score", content=chunks, headers={"Authorization": f"Bearer {primary}",
                                                                 "content-type": "application/json"})
        assert too_big.status_code == 413

        new = generate_key()
        config.write_text(json.dumps({
            "primary_key_hash": hash_key(new), "secondary_key_hash": hash_key(secondary),
            "telemetry_path": json.loads(config.read_text())["telemetry_path"], "sample_rate": 1.0,
            "max_request_bytes": 4096,
        }))
        rotated = time.monotonic()
        old_key = {"Authorization": f"Bearer {primary}"}
        while client.post("/score", json={"data": [ROW]}, headers=old_key).status_code != 401:
            assert time.monotonic() - rotated < 1.0, "the old key still works a second after rotation"
            time.sleep(0.05)
        new_key_response = client.post("/score", json={"data": [ROW]}, headers={"Authorization": f"Bearer {new}"})
        assert new_key_response.status_code == 200
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {secondary}"}).text
        counts = dict(re.findall(r'aml_scoring_requests_total\{code="(\d+)"\} (\d+)', metrics))
        assert int(counts["200"]) >= 2 and counts["413"] == "1" and int(counts["401"]) >= 2


@pytest.mark.slow
def test_real_server_flushes_telemetry_on_sigterm(
    make_bundle: BundleFactory, tmp_path: Path
) -> None:
    telemetry = tmp_path / "t.jsonl"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auth_enabled": False, "telemetry_path": "t.jsonl", "sample_rate": 1.0}))
    port = _free_port()
    log = tmp_path / "server.log"
    bundle = make_bundle(builtin="sklearn")
    process = _start(["--bundle", str(bundle), "--port", str(port), "--config", str(config)], log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        response = httpx.post(f"http://127.0.0.1:{port}/score", json={"data": [ROW]}, timeout=10)
        assert response.json()["predictions"] == [0]
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal: the exit status says SIGTERM.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM), log.read_text()
    line = json.loads(telemetry.read_text().splitlines()[0])  # relative to the config file's folder
    assert line["status"] == 200 and json.loads(line["input"]) == {"data": [ROW]}


def test_a_broken_bundle_fails_before_serving(tmp_path: Path) -> None:
    (tmp_path / "image.json").write_text(json.dumps({"name": "x", "version": 1}))
    result = subprocess.run(
        [sys.executable, "-m", "airflow_aml.runtime.scoring", "--bundle", str(tmp_path), "--port", "1"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    assert "exactly one of entry_script and builtin_scorer" in result.stderr


def test_the_scoring_package_does_not_import_airflow(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(builtin="sklearn")
    code = textwrap.dedent(f"""
        import sys
        import airflow_aml.runtime.model
        import airflow_aml.runtime.scoring
        import airflow_aml.runtime.scoring.__main__
        from airflow_aml.runtime.scoring import ScoringConfig, create_app

        app = create_app({str(bundle)!r}, ScoringConfig(auth_enabled=False))
        service = app.state.scoring
        service.start()
        assert service.wait_initialized(30), service.init_error
        assert service.scorer.run("", {{"data": [{ROW!r}]}})["predictions"] == [0]
        loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
