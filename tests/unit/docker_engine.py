"""The real Docker engine the Docker tests need, in one place.

`engine_or_fail()` returns an API client of the engine with the registry-less base image present.
Without them the test FAILS under CI=true or AML_TEST_DOCKER=1 and is skipped elsewhere. A failure
carries what ``scripts/docker-service.sh`` recorded and the engine log's last lines: CI shows the
test output, not the set-up script's, so the reason has to travel with the failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

from airflow_aml.exceptions import DockerEngineUnavailableError
from airflow_aml.images.docker import DEFAULT_BASE_IMAGE, docker_api_client


def docker_required() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("AML_TEST_DOCKER") == "1"


_reported = False  # the whole report goes with the first failure of the session only


def _tail(path: Path, lines: int, *, problems_only: bool = False) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(unreadable: {exc.strerror})"
    if problems_only:  # the engine's log is chatty: its warnings and errors say why it is gone
        text = [line for line in text if any(f"level={lvl}" in line for lvl in ("warning", "error", "fatal"))] or text
    return "\n".join(text[-lines:])


def set_up_report() -> str:
    """What docker-service.sh recorded, and the last lines of the engine's log."""
    status = Path(os.environ.get("AML_DOCKER_STATUS", "/tmp/airflow-aml-docker-status"))
    engine_log = Path(os.environ.get("AML_DOCKERD_LOG", "/var/log/airflow-aml-dockerd.log"))
    global _reported
    if _reported:
        return "\n(the first Docker test failure of this session has the set-up report)"
    _reported = True
    return (f"\n--- {status} (scripts/docker-service.sh):\n{_tail(status, 20)}"
            f"\n--- {engine_log}, warnings and errors:\n{_tail(engine_log, 12, problems_only=True)}")


def unavailable(reason: str) -> NoReturn:
    if docker_required():
        pytest.fail(f"{reason} (CI=true or AML_TEST_DOCKER=1: Docker is required){set_up_report()}", pytrace=False)
    pytest.skip(f"{reason}; as root, `source scripts/docker-service.sh` starts one and makes the base image")


def engine_or_fail(base_image: str = DEFAULT_BASE_IMAGE) -> Any:
    from docker.errors import ImageNotFound

    try:
        api = docker_api_client(timeout=30)
    except DockerEngineUnavailableError as exc:
        unavailable(f"No Docker engine: {exc}")
    try:
        api.inspect_image(base_image)
    except ImageNotFound:
        api.close()
        unavailable(f"Base image {base_image} missing: run docker/build-base-image.sh")
    return api
