"""``airflow-aml service`` really serves: the installed console script as a subprocess over a temp
SQLite, a token from ``airflow-aml token create``, and the CLI pointed at it as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from airflow_aml.cli import app
from airflow_aml.cli.service import is_loopback
from tests.unit.cli.helpers import assert_one_line_error
from tests.unit.service.served import free_port

CLI = str(Path(sys.executable).with_name("airflow-aml"))
START_TIMEOUT = 20.0


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AML_")}
    return {**env, "AML_HOME": str(home), "AML_PRINCIPAL": "mallory", "AML_PROGRESS": "0", **extra}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    """The service on a free port: (its URL, the environment it runs in, its first stdout line)."""
    env = _env(tmp_path / "home", AML_STORE_URI=f"sqlite:///{tmp_path / 'served.db'}")
    port = free_port()
    process = subprocess.Popen([CLI, "service", "--port", str(port), "--log-level", "warning"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                out, err = process.communicate(timeout=10)
                raise AssertionError(f"airflow-aml service did not start:\n{out}\n{err}")
            time.sleep(0.1)
        assert process.stdout is not None
        yield url, env, process.stdout.readline()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_service_serves_tokens_from_token_create_and_the_cli_works_over_it(
    running: tuple[str, dict[str, str], str], tmp_path: Path,
) -> None:
    url, env, banner = running
    assert f"on {url}" in banner and "served.db" in banner

    created = _cli(env, "token", "create", "--principal", "alice")  # on the service's database
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("aml_pat_")

    workspaces = url + "/api/v1/workspaces"
    assert httpx.get(workspaces, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    assert httpx.get(workspaces, timeout=10).status_code == 401

    # As a user types it: the store is the service, the token says who we are ($AML_PRINCIPAL is
    # ignored: the service decides).
    user = _env(tmp_path / "client-home", AML_STORE_URI=url, AML_TOKEN=token)
    steps = [("workspace", "create", "demo"), ("workspace", "list"), ("--json", "-w", "demo", "workspace", "show")]
    outputs = []
    for step in steps:
        result = _cli(user, *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
        outputs.append(result.stdout)
    assert "demo" in outputs[1] and "alice" in outputs[1]
    shown = json.loads(outputs[2])
    assert shown["principal"] == "alice" and shown["role"] == "Owner" and token not in outputs[2]
    assert shown["store_uri"] == url


def test_a_non_loopback_address_needs_allow_remote(aml_home: Path, store_uri: str) -> None:
    result = CliRunner().invoke(app, ["--store-uri", store_uri, "service", "--host", "0.0.0.0"])
    assert_one_line_error(result, "--allow-remote", "TLS")


def test_the_service_serves_a_database_not_another_service(aml_home: Path) -> None:
    result = CliRunner().invoke(app, ["--store-uri", "http://127.0.0.1:9", "service"])
    assert_one_line_error(result, "serves a SQL database")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
