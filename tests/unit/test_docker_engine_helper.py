"""The Docker tests' failure message carries the set-up script's record and the engine's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit import docker_engine


def test_a_required_engine_that_is_missing_fails_with_the_set_up_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text("2026-12-06T10:00:00Z apt-get install docker.io failed: E: Unable to locate package\n")
    engine_log = tmp_path / "dockerd.log"
    engine_log.write_text('level=info msg="starting"\nlevel=fatal msg="failed to start daemon: no space"\n')
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("AML_DOCKER_STATUS", str(status))
    monkeypatch.setenv("AML_DOCKERD_LOG", str(engine_log))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setattr(docker_engine, "_reported", False)

    with pytest.raises(pytest.fail.Exception) as first:
        docker_engine.engine_or_fail()
    assert "No Docker engine" in str(first.value)
    assert "Unable to locate package" in str(first.value)
    assert "failed to start daemon: no space" in str(first.value)
    assert 'msg="starting"' not in str(first.value)  # only the engine's warnings and errors

    with pytest.raises(pytest.fail.Exception) as second:  # once per session, not 26 times
        docker_engine.engine_or_fail()
    assert "Unable to locate package" not in str(second.value)


def test_an_optional_engine_that_is_missing_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("AML_TEST_DOCKER", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(pytest.skip.Exception, match="docker-service.sh"):
        docker_engine.engine_or_fail()
