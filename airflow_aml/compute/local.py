"""The ``local`` compute target: runs execute on this machine under a detached supervisor.

``submit`` starts ``python -m airflow_aml.compute.supervisor`` in a new session and returns. The
supervisor is not a child that must be waited for: it survives the submitting process (an Airflow
task that defers or is killed, a closed notebook) and finalizes the run on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from airflow_aml.compute.base import AbstractComputeTarget, RunLaunch
from airflow_aml.config import aml_home
from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.exceptions import AmlError, NotFoundError, RunConfigurationError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.runtime.context import ENV_HOME, ENV_PRINCIPAL, ENV_STORE_URI, IDENTITY_VARIABLES

log = logging.getLogger(__name__)

PROP_PID = "local.supervisor_pid"
PROP_HOST = "local.host"
SUPERVISOR_MODULE = "airflow_aml.compute.supervisor"


class LocalComputeTarget(AbstractComputeTarget):
    kind = "local"

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        super().validate(run_config, source_directory)
        if run_config.environment.kind == "virtualenv":
            from airflow_aml.compute.environments import EnvironmentBuildError, find_uv

            try:
                find_uv()
            except EnvironmentBuildError as exc:
                raise RunConfigurationError(
                    f"Compute target {self.name!r} cannot build the run's virtualenv: {exc}"
                ) from exc

    def submit(self, launch: RunLaunch) -> None:
        from airflow_aml.compute.supervisor import run_dir

        store = self.workspace.store
        folder = run_dir(launch.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "run_config.json"
        # 0600: environment_variables may carry credentials the user did not mean to publish.
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(launch.run_config, handle, indent=2, sort_keys=True)
        command = [
            sys.executable, "-m", SUPERVISOR_MODULE,
            "--run-id", launch.run_id,
            "--workspace", launch.workspace,
            "--principal", launch.principal,
            "--snapshot-path", launch.snapshot_path,
            "--run-config-file", str(config_file),
        ]
        if launch.datastore:
            command += ["--datastore", launch.datastore]
        env = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARIABLES}
        # In the environment, not on the command line: the URI may carry a password.
        env[ENV_STORE_URI] = launch.store_uri
        env[ENV_PRINCIPAL] = launch.principal
        env[ENV_HOME] = str(aml_home())  # the supervisor must use the same home as the submitter
        try:
            proc = _start_with_sigterm_blocked(command, cwd=folder, env=env, log_path=folder / "supervisor.log")
        except OSError as exc:
            error = f"Could not start the local supervisor of run {launch.run_id!r}: {exc}"
            store.update_run_status(launch.run_id, RunStatus.FAILED, error=error)
            with contextlib.suppress(NotFoundError):
                store.update_activity(launch.run_id, status=ActivityStatus.FAILED, progress=1.0, error=error)
            raise AmlError(error) from exc
        # Reap it when it ends while we are still alive (no zombie); if we exit first, init adopts it.
        threading.Thread(target=proc.wait, name=f"aml-reap-{launch.run_id}", daemon=True).start()
        log.info("Started supervisor pid %s for run %s (log: %s)", proc.pid, launch.run_id,
                 folder / "supervisor.log")
        try:
            store.add_run_properties(launch.run_id, {PROP_PID: str(proc.pid), PROP_HOST: socket.gethostname()})
        except Exception:
            # The run goes on without it; only cancel's SIGTERM shortcut needs the pid.
            log.warning("Could not record the supervisor pid of run %s", launch.run_id, exc_info=True)

    def cancel(self, run_id: str) -> None:
        store = self.workspace.store
        record = store.request_cancel(run_id)
        if record.status.is_terminal:
            return
        pid_text, host = record.properties.get(PROP_PID), record.properties.get(PROP_HOST)
        if not pid_text or host != socket.gethostname():
            # Not started yet, or supervised on another machine: that supervisor polls the flag.
            return
        pid = int(pid_text)
        if supervisor_alive(pid, run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        # The supervisor is gone (SIGKILL, reboot) and nobody else will end the run.
        current = store.get_run(run_id)
        if not current.status.is_terminal:
            error = f"Canceled; the supervisor (pid {pid} on {host}) of run {run_id!r} was no longer running"
            store.update_run_status(run_id, RunStatus.CANCELED, error=error)
            with contextlib.suppress(NotFoundError):
                store.update_activity(run_id, status=ActivityStatus.CANCELED, progress=1.0, message="Canceled")


def _start_with_sigterm_blocked(
    command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start the detached supervisor with SIGTERM blocked.

    The signal mask is inherited across fork and exec; the supervisor unblocks SIGTERM once its
    handler is installed. A cancel that arrives while Python is still importing then stays
    pending, instead of killing the supervisor before it can finalize the run.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def supervisor_alive(pid: int, run_id: str) -> bool:
    """Whether ``pid`` is alive and is the supervisor of ``run_id`` (pids get reused)."""
    proc = Path("/proc") / str(pid)
    if Path("/proc").is_dir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and SUPERVISOR_MODULE.encode() in cmdline and run_id.encode() in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
