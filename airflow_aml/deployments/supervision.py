"""The SDK's side of a deployment's supervisor: its local folder, and the process itself.

A deployment is served by one detached supervisor process on the machine that created it
(``python -m airflow_aml.deployments.supervisor --dir <folder>``, see ``supervisor/``). The SDK
talks to it through files in the deployment's folder (``paths.py``): it writes the desired state
and the replicas' scoring config, and starts the supervisor when none runs. A supervisor is
recognised by the module and the folder on its command line, so a reused pid is never mistaken
for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_aml.deployments.paths import (
    PID_FILE,
    SCORING_CONFIG,
    SUPERVISOR_LOG,
    SUPERVISOR_MODULE,
    deployment_dir,
    write_json_atomic,
)
from airflow_aml.exceptions import DeploymentError
from airflow_aml.processes import command_line, process_alive, spawn_detached, this_host, worker_environment
from airflow_aml.runtime.scoring.config import ScoringConfig


class SupervisorHandle:
    """One deployment's folder on this machine and the supervisor that serves from it."""

    def __init__(self, workspace: str, name: str) -> None:
        self.name = name
        self.folder = deployment_dir(workspace, name)
        self._started: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ the process
    def pid(self) -> int | None:
        """The pid of this deployment's supervisor when it runs on this machine, else None."""
        try:
            pid = int((self.folder / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid, (SUPERVISOR_MODULE, str(self.folder))) else None

    @property
    def started_here(self) -> bool:
        """Whether this handle started a supervisor (so its death can be told from here)."""
        return self._started is not None

    def alive(self) -> bool:
        """Whether a supervisor runs here (or is starting, from this handle)."""
        if self._started is not None and self._started.poll() is None:
            return True
        return self.pid() is not None

    def start(self, *, store_uri: str, principal: str) -> int:
        """Start a supervisor (detached, SIGTERM blocked until its handler exists); its pid."""
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        env = worker_environment(os.environ, store_uri=store_uri, principal=principal)
        try:
            proc = spawn_detached([sys.executable, "-m", SUPERVISOR_MODULE, "--dir", str(self.folder)],
                                  cwd=self.folder, env=env, log_path=self.folder / SUPERVISOR_LOG,
                                  block_sigterm=True)
        except OSError as exc:
            raise DeploymentError(f"Could not start the supervisor of deployment '{self.name}': {exc}",
                                  deployment=self.name) from exc
        # The pid file is the supervisor's to write, once it holds the deployment's lock (a second
        # start that loses the lock must not name itself); until then, this Popen says it lives.
        self._started = proc
        return proc.pid

    def wait_gone(self, pid: int, timeout: float) -> None:
        """Wait (bounded) until the supervisor ``pid`` has exited (it removes the folder last)."""
        deadline = time.monotonic() + timeout
        while process_alive(pid, (SUPERVISOR_MODULE, str(self.folder))) and time.monotonic() < deadline:
            time.sleep(0.05)

    def recorded_alive(self, runtime: dict[str, Any]) -> bool | None:
        """Whether the supervisor a deployment's record names (``runtime["supervisor"]``: pid and
        host, published when it starts) runs: None from another host or with nothing recorded.
        Its folder may be under another ``$AML_HOME`` than this process's, so the command line is
        matched on the module and the folder's last parts (``deployments/<workspace>/<name>``)."""
        supervisor = runtime.get("supervisor") or {}
        pid, host = supervisor.get("pid"), supervisor.get("host")
        if not isinstance(pid, int) or host != this_host():
            return None
        try:
            args = command_line(pid)
        except PermissionError:
            return True  # cannot be seen, so cannot be judged dead
        if args is None or SUPERVISOR_MODULE not in args:
            return False
        tail = "/" + "/".join(self.folder.parts[-3:])
        return any(arg.endswith(tail) for arg in args)

    # ------------------------------------------------------------------ files
    def write_scoring_config(self, scoring: ScoringConfig) -> None:
        path = self.folder / SCORING_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)  # a container's user reads it through a bind mount
        write_json_atomic(path, scoring.model_dump(mode="json"), mode=0o644)

    def supervisor_log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.folder / SUPERVISOR_LOG).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no supervisor log)"

    def logs(self, replicas: list[dict[str, Any]], *, tail: int | None) -> str:
        """The supervisor's log and each replica's, last ``tail`` lines of each (None = all)."""
        parts = [("supervisor", self.folder / SUPERVISOR_LOG)]
        for replica in replicas:
            label = f"replica g{replica.get('generation')}-r{replica.get('index')} (port {replica.get('port')})"
            if replica.get("log"):
                parts.append((label, Path(replica["log"])))
        out = []
        for label, path in parts:
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                text = ["(no log on this machine)"]
            out.append(f"==> {label} <==")
            out.extend(text if tail is None else text[-tail:])
        return "\n".join(out) + "\n"

    def remove_folder(self) -> None:
        """Remove the local folder, unless a supervisor still runs from it."""
        if not self.alive():
            shutil.rmtree(self.folder, ignore_errors=True)
