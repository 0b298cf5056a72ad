"""Running a run's script as a process group: environment, output streaming, cancel and time limit.

The script is started in a session of its own, so its process group holds the script and every
process it spawns (unless one of them starts a session of its own, which we cannot follow).
Stopping a run signals the whole group: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airflow_aml.compute.logstream import LogBatcher, Tail, pump
from airflow_aml.config import IDENTITY_VARIABLES
from airflow_aml.processes import KILL_GRACE_SECONDS, kill_process_group
from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 1.0


def build_script_env(
    base: Mapping[str, str],
    user_variables: Mapping[str, str],
    identity: Mapping[str, str],
    *,
    venv: str | Path | None = None,
) -> dict[str, str]:
    """The script's environment: ``base`` + the run configuration's variables + the identity.

    Identity variables inherited from ``base`` are dropped first (a supervisor started from inside
    another run must not leak that run's id) and set last (a run configuration cannot claim to be
    another run).
    """
    env = {k: v for k, v in base.items() if k not in IDENTITY_VARIABLES}
    env.update(user_variables)
    env.update({k: v for k, v in identity.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"  # output reaches the log as it is printed, not at exit
    if venv is not None:
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join([str(Path(venv) / "bin"), env.get("PATH", os.defpath)])
    return env


@dataclass
class ScriptOutcome:
    exit_code: int | None
    canceled: bool = False
    timed_out: bool = False
    stderr_tail: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.canceled and not self.timed_out


class ScriptRunner:
    """Runs ``interpreter script args`` for one run and watches it until it ends.

    While it runs: output is streamed to the store, the run's ``cancel_requested`` flag is polled
    about once per ``poll_interval``, ``stop_event`` (SIGTERM of the supervisor, cancel of a
    sweep's parent) is honoured at once, and ``max_duration`` is enforced.
    """

    def __init__(
        self,
        store: AbstractStore,
        run_id: str,
        *,
        command: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        batcher: LogBatcher,
        stop_event: threading.Event,
        max_duration: float | None = None,
        poll_interval: float = CANCEL_POLL_SECONDS,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(env)
        self.batcher = batcher
        self.stop_event = stop_event
        self.max_duration = max_duration
        self.poll_interval = poll_interval
        self.kill_grace = kill_grace

    def run(self) -> ScriptOutcome:
        tail = Tail(max_lines=20)
        # Our own pipes (not Popen's file objects): the pump threads own and close the read ends.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, start_new_session=True,
            )
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        pumps = [
            threading.Thread(target=pump, args=(out_r, "stdout", self.batcher), daemon=True,
                             name=f"aml-stdout-{self.run_id}"),
            threading.Thread(target=pump, args=(err_r, "stderr", self.batcher, tail), daemon=True,
                             name=f"aml-stderr-{self.run_id}"),
        ]
        for thread in pumps:
            thread.start()
        outcome = ScriptOutcome(exit_code=None)
        try:
            outcome.canceled, outcome.timed_out = self._watch(proc, started)
        finally:
            # Also after a clean exit: processes the script left behind are part of the run, and
            # they would keep the output pipes open.
            kill_process_group(proc, self.kill_grace if proc.poll() is None else 1.0)
        for thread in pumps:
            # A process that escaped the group (its own session) may hold a pipe open forever.
            thread.join(timeout=10)
        outcome.exit_code = proc.returncode
        outcome.stderr_tail = tail.lines()
        outcome.duration = time.monotonic() - started
        return outcome

    def _watch(self, proc: subprocess.Popen[bytes], started: float) -> tuple[bool, bool]:
        """Wait for the script; (canceled, timed_out) when it had to be stopped."""
        deadline = started + self.max_duration if self.max_duration else None
        next_poll = started + self.poll_interval
        while proc.poll() is None:
            if self.stop_event.is_set():
                return True, False
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False, True
            if now >= next_poll:
                next_poll = now + self.poll_interval
                if self._cancel_requested():
                    return True, False
            self.stop_event.wait(0.1)
        return False, False

    def _cancel_requested(self) -> bool:
        try:
            return self.store.get_run(self.run_id).cancel_requested
        except Exception:
            # The store being briefly unreachable must not kill a healthy script.
            log.warning("Could not poll cancel flag of run %s", self.run_id, exc_info=True)
            return False
