from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from airflow_aml.compute.logstream import LogBatcher
from airflow_aml.compute.script import ScriptRunner, build_script_env
from airflow_aml.processes import group_alive, kill_process_group
from tests.unit.compute.fakes import FakeStore

# Starts a grandchild that sleeps, prints its pid, then sleeps itself (optionally ignoring SIGTERM).
SPAWNER = textwrap.dedent("""
    import signal, subprocess, sys, time
    if "--stubborn" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    print(child.pid, flush=True)
    time.sleep(300)
""")


def alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping PID 1 counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def runner(store: FakeStore, tmp_path: Path, code: str, *args: str, **kwargs) -> ScriptRunner:
    (tmp_path / "script.py").write_text(textwrap.dedent(code))
    return ScriptRunner(
        store, "r", command=[sys.executable, "script.py", *args], cwd=tmp_path,
        env=build_script_env({"PATH": "/usr/bin:/bin"}, {}, {"AML_RUN_ID": "r"}),
        batcher=kwargs.pop("batcher", None) or LogBatcher(store, "r", max_delay=0.2),
        stop_event=kwargs.pop("stop_event", None) or threading.Event(),
        poll_interval=0.2, kill_grace=kwargs.pop("kill_grace", 2.0), **kwargs,
    )


def first_line(store: FakeStore, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = store.text("stdout")
        if "\n" in text:
            return text.split("\n", 1)[0]
        time.sleep(0.05)
    raise AssertionError("the script printed nothing")


def test_build_script_env_layers_and_protects_identity() -> None:
    base = {"PATH": "/bin", "AML_RUN_ID": "outer-run", "AML_PARENT_RUN_ID": "outer", "HOME": "/h", "PYTHONHOME": "/x"}
    env = build_script_env(base, {"LR": "0.1", "AML_RUN_ID": "spoofed"}, {"AML_RUN_ID": "r1"}, venv="/envs/abc")
    assert env["AML_RUN_ID"] == "r1"
    assert "AML_PARENT_RUN_ID" not in env  # the outer run's parent must not leak
    assert env["LR"] == "0.1" and env["HOME"] == "/h"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["VIRTUAL_ENV"] == "/envs/abc" and env["PATH"].startswith("/envs/abc/bin:")
    assert "PYTHONHOME" not in env


def test_kill_process_group_kills_grandchildren_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "spawner.py").write_text(SPAWNER)
    proc = subprocess.Popen([sys.executable, "spawner.py", "--stubborn"], cwd=tmp_path, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    assert alive(grandchild) and group_alive(proc.pid)
    started = time.monotonic()
    kill_process_group(proc, grace=1.0)
    proc.stdout.close()
    assert time.monotonic() - started < 5
    assert proc.returncode == -9  # needed the SIGKILL
    assert not alive(grandchild)
    assert not group_alive(proc.pid)


def test_script_output_is_streamed_and_exit_code_reported(tmp_path: Path) -> None:
    store = FakeStore()
    script = runner(store, tmp_path, """
        import os, sys
        print("out", os.environ["AML_RUN_ID"])
        print("boom", file=sys.stderr)
        sys.exit(3)
    """)
    outcome = script.run()
    script.batcher.close()
    assert outcome.exit_code == 3 and not outcome.succeeded
    assert outcome.stderr_tail == ["boom"]
    assert store.text("stdout") == "out r\n"


def test_cancel_flag_stops_the_process_tree(tmp_path: Path) -> None:
    store = FakeStore()
    script = runner(store, tmp_path, SPAWNER)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(script.run()))
    thread.start()
    grandchild = int(first_line(store))
    store.get_run("r").cancel_requested = True
    thread.join(timeout=15)
    script.batcher.close()
    outcome = result[0]
    assert outcome.canceled and outcome.exit_code == -15
    assert not alive(grandchild)


def test_stop_event_stops_at_once(tmp_path: Path) -> None:
    store = FakeStore()
    stop = threading.Event()
    script = runner(store, tmp_path, SPAWNER, stop_event=stop)
    threading.Timer(1.0, stop.set).start()
    outcome = script.run()
    script.batcher.close()
    assert outcome.canceled and outcome.duration < 5


def test_max_duration_is_enforced(tmp_path: Path) -> None:
    store = FakeStore()
    script = runner(store, tmp_path, "import time; time.sleep(60)", max_duration=1.0)
    outcome = script.run()
    script.batcher.close()
    assert outcome.timed_out and not outcome.canceled
    assert 1.0 <= outcome.duration < 6


def test_leftover_background_processes_are_cleaned_up_after_exit(tmp_path: Path) -> None:
    store = FakeStore()
    script = runner(store, tmp_path, """
        import subprocess
        child = subprocess.Popen(["sleep", "300"])
        print(child.pid, flush=True)
    """)
    outcome = script.run()
    script.batcher.close()
    assert outcome.exit_code == 0
    assert not alive(int(store.text("stdout").split()[0]))


def test_interpreter_that_cannot_start_raises(tmp_path: Path) -> None:
    store = FakeStore()
    batcher = LogBatcher(store, "r")
    script = ScriptRunner(store, "r", command=["/no/such/python", "x.py"], cwd=tmp_path, env={},
                          batcher=batcher, stop_event=threading.Event())
    with pytest.raises(FileNotFoundError):
        script.run()
    batcher.close()
