"""Detached worker processes: starting them, and telling whether one still runs.

Three kinds of work outlive the call that starts them: a run (its supervisor), an image build
(the build worker) and a web service (its supervisor). Each is a Python process started here in
a session of its own, so that it survives the Airflow task or notebook that started it, with
the workspace identity in its environment (never on its command line, which other users can
read) and its output appended to a log file.

Whether such a process still runs is asked by pid and host, plus *markers*: strings that must
be on the process's command line. Pids get reused (after a reboot, a recorded pid may be anyone's),
so a pid alone is never trusted on Linux, where ``/proc`` tells the command line.

Process groups: a run's script runs in a process group of its own; ``kill_process_group`` stops
the whole group (SIGTERM, a grace period, SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from airflow_aml.config import ENV_HOME, ENV_PRINCIPAL, ENV_RUN_TOKEN, ENV_STORE_URI, IDENTITY_VARIABLES, aml_home

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
_PROC = Path("/proc")


def this_host() -> str:
    return socket.gethostname()


def worker_environment(
    base: Mapping[str, str], *, store_uri: str, principal: str, run_token: str | None = None,
) -> dict[str, str]:
    """``base`` without any inherited identity, plus the workspace identity the worker acts with.

    The store URI goes in the environment, not on the command line: it may carry a password. The
    home is the absolute one of this process, so the worker finds the same files from its own
    working folder. ``run_token``: the run token of a served workspace (``store_uri`` then carries
    no token); the caller's own tokens are never passed on.
    """
    env = {key: value for key, value in base.items() if key not in IDENTITY_VARIABLES}
    if run_token is not None:
        env[ENV_RUN_TOKEN] = run_token
    env[ENV_STORE_URI] = store_uri
    env[ENV_PRINCIPAL] = principal
    env[ENV_HOME] = str(aml_home())
    return env


def spawn_detached(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, block_sigterm: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session, stdin closed, stdout and stderr appended to ``log_path``.

    ``block_sigterm``: start it with SIGTERM blocked (the signal mask is inherited across fork and
    exec). A worker that unblocks SIGTERM once its handler is installed then never dies of a cancel
    that arrives while Python is still importing. A thread reaps the process if it ends while this
    one lives (no zombie); if this one exits first, init adopts it. OSError when it cannot start.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}) if block_sigterm else None
    try:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    threading.Thread(target=proc.wait, name=f"aml-reap-{proc.pid}", daemon=True).start()
    return proc


Marker = str | tuple[str, ...]  # one argument of the command line, or any one of several


def command_line(pid: int) -> list[str] | None:
    """The arguments of process ``pid`` (None when it is gone or a zombie, or /proc is missing);
    PermissionError when /proc hides them from this user."""
    try:
        args = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        state = _proc_state((_PROC / str(pid) / "stat").read_text())
    except PermissionError:
        raise
    except (OSError, IndexError):
        return None
    if state in ("Z", "X"):
        return None
    return [arg.decode(errors="replace") for arg in args if arg]


def process_alive(pid: int, markers: Sequence[Marker] = ()) -> bool:
    """Whether ``pid`` runs (not a zombie) with each of ``markers`` as one of its arguments: a
    string must equal an argument, a tuple names alternatives (a module renamed since the
    process started). A process whose arguments this user may not read counts as alive: a
    waiter must not fail a run it merely cannot see."""
    if pid <= 0:
        return False
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        args = command_line(pid)
    except PermissionError:
        return True
    if args is None:
        return False
    return all(
        any(choice in args for choice in (marker if isinstance(marker, tuple) else (marker,)))
        for marker in markers
    )


def alive_here(pid: int | str | None, host: str | None, markers: Sequence[Marker] = ()) -> bool | None:
    """``process_alive`` for a process recorded as (pid, host); None when that cannot be told
    from this machine (another host, or nothing recorded yet)."""
    if pid in (None, "") or not host or host != this_host():
        return None
    try:
        number = int(pid)  # type: ignore[arg-type]
    except ValueError:
        return None
    return process_alive(number, markers)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in the process group.

    ``killpg(pgid, 0)`` also succeeds for zombies, and orphaned zombies linger when PID 1 does not
    reap (containers), so /proc is read where it exists.
    """
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces and parentheses).
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def kill_process_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL whatever is left after ``grace``."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(pgid):
            return
        time.sleep(0.05)
    log.info("Process group %s still alive %.1fs after SIGTERM; sending SIGKILL", pgid, grace)
    signal_group(pgid, signal.SIGKILL)
    proc.wait()
    # SIGKILL is delivered asynchronously: wait (briefly) until the rest of the group is gone too.
    deadline = time.monotonic() + 2.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _proc_state(stat: str) -> str:
    # The state follows the command name, which may itself contain spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()[0]
