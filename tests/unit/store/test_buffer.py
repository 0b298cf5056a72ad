from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from airflow_aml.entities import Metric
from airflow_aml.store.buffer import MetricBuffer
from airflow_aml.workspace import Workspace


class CountingStore:
    """Wraps a real store and counts the transactions the buffer issues."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def log_batch(self, run_id, metrics) -> None:
        self.batches.append(len(metrics))
        self.inner.log_batch(run_id, metrics)


def test_ten_thousand_logs_are_a_handful_of_transactions(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    store = CountingStore(workspace.store)
    buffer = MetricBuffer(store, max_items=2000, interval=60)  # type: ignore[arg-type]
    for i in range(10_000):
        buffer.add(run.id, Metric("loss", float(i), i, time.time()))
    buffer.flush()
    assert sum(store.batches) == 10_000
    assert len(store.batches) <= 6
    assert len(workspace.store.get_metrics(run.id)) == 10_000


def test_background_thread_flushes_without_being_asked(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    buffer = MetricBuffer(workspace.store, max_items=10_000, interval=0.05)
    buffer.add(run.id, Metric("loss", 1.0, 0, time.time()))
    deadline = time.monotonic() + 5
    while not workspace.store.get_metrics(run.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(workspace.store.get_metrics(run.id)) == 1
    buffer.close()


def test_failed_write_is_retried(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()

    class FlakyStore(CountingStore):
        failures = 2

        def log_batch(self, run_id, metrics) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("transient")
            super().log_batch(run_id, metrics)

    store = FlakyStore(workspace.store)
    buffer = MetricBuffer(store, interval=60)  # type: ignore[arg-type]
    buffer.add(run.id, Metric("x", 1.0, 0, time.time()))
    buffer.flush()
    assert len(workspace.store.get_metrics(run.id)) == 1


SCRIPT = """
import os, sys, time
from airflow_aml.runtime import Run
run = Run.get_context()
for i in range(5000):
    run.log("loss", float(i))
mode = sys.argv[1]
if mode == "crash":
    raise RuntimeError("boom")
if mode == "sigterm":
    print("ready", flush=True)
    time.sleep(60)
"""


def _run_script(workspace: Workspace, tmp_path: Path, mode: str) -> str:
    run = workspace.experiment("e").start_logging()
    script = tmp_path / "log.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "AML_RUN_ID": run.id, "AML_WORKSPACE": workspace.name, "AML_STORE_URI": workspace.store_uri}
    proc = subprocess.Popen(
        [sys.executable, str(script), mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if mode == "sigterm":
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    if mode == "crash":
        assert proc.returncode == 1
    if mode == "sigterm":
        assert proc.returncode == 128 + signal.SIGTERM
    return run.id


def test_nothing_is_lost_at_exit_on_crash_or_sigterm(workspace: Workspace, tmp_path: Path) -> None:
    for mode in ("exit", "crash", "sigterm"):
        run_id = _run_script(workspace, tmp_path, mode)
        assert len(workspace.store.get_metrics(run_id)) == 5000, mode
