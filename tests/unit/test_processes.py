"""Detached workers: started in a session of their own, recognised by pid, host and markers."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from airflow_aml import processes
from airflow_aml.config import ENV_HOME, ENV_PRINCIPAL, ENV_RUN_ID, ENV_STORE_URI


def test_worker_environment_drops_inherited_identity(aml_home: Path) -> None:
    base = {"PATH": "/bin", ENV_RUN_ID: "someone-elses-run", ENV_PRINCIPAL: "mallory"}
    env = processes.worker_environment(base, store_uri="sqlite:////x/aml.db", principal="alice")
    assert env == {"PATH": "/bin", ENV_STORE_URI: "sqlite:////x/aml.db", ENV_PRINCIPAL: "alice",
                   ENV_HOME: str(aml_home)}


def test_spawn_detached_and_alive_with_markers(tmp_path: Path) -> None:
    marker = f"aml-test-marker-{os.getpid()}"
    proc = processes.spawn_detached(
        [sys.executable, "-c", "import sys, time; print('up', flush=True); time.sleep(30)", marker],
        cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "logs" / "worker.log",
    )
    try:
        assert os.getsid(proc.pid) == proc.pid  # a session of its own: it outlives our terminal
        assert processes.process_alive(proc.pid, (marker,))
        assert not processes.process_alive(proc.pid, ("some-other-worker",))  # a reused pid is not ours
        assert processes.alive_here(proc.pid, processes.this_host(), (marker,)) is True
        assert processes.alive_here(proc.pid, "another-host", (marker,)) is None
        assert processes.alive_here(None, processes.this_host()) is None
        deadline = time.monotonic() + 10
        while "up" not in (tmp_path / "logs" / "worker.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "up" in (tmp_path / "logs" / "worker.log").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not processes.process_alive(proc.pid, (marker,))


def test_block_sigterm_is_inherited(tmp_path: Path) -> None:
    # The child would die of SIGTERM at once if it were not blocked; it only exits when told to.
    script = "import signal, sys, time; time.sleep(0.5); print(signal.SIGTERM in signal.pthread_sigmask(" \
             "signal.SIG_BLOCK, []), flush=True)"
    proc = processes.spawn_detached([sys.executable, "-c", script], cwd=tmp_path, env=dict(os.environ),
                                    log_path=tmp_path / "w.log", block_sigterm=True)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert (tmp_path / "w.log").read_text().strip() == "True"
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # ours is restored


@pytest.mark.parametrize("pid", [0, -1])
def test_no_such_process(pid: int) -> None:
    assert not processes.process_alive(pid)


def test_markers_are_whole_arguments(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / "svc2"
    proc = processes.spawn_detached([sys.executable, "-c", "import time; time.sleep(30)", "--dir", str(folder)],
                                    cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "w.log")
    try:
        assert processes.process_alive(proc.pid, ("--dir", str(folder)))
        assert not processes.process_alive(proc.pid, (str(tmp_path / "ws" / "svc"),))  # a prefix is not it
        assert processes.process_alive(proc.pid, (("renamed.module", "--dir"),))  # one of alternatives
        assert processes.command_line(proc.pid)[-2:] == ["--dir", str(folder)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
