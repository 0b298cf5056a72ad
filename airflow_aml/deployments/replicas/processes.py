"""The ``local`` deployment target: each replica is a process of the image's own interpreter."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_aml.deployments.paths import SCORING_CONFIG, deployment_dir
from airflow_aml.deployments.replicas.base import (
    REPLICA_LOG_LEVEL,
    SCORING_MODULE,
    Replica,
    ReplicaDriver,
    ReplicaSpec,
    replica_environment,
)
from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import ValidationError
from airflow_aml.processes import kill_process_group, process_alive

log = logging.getLogger(__name__)


class ProcessReplica(Replica):
    def __init__(self, spec: ReplicaSpec, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(spec)
        self.proc = proc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        kill_process_group(self.proc, grace=timeout)

    def describe(self) -> dict[str, Any]:
        return {"pid": self.proc.pid}

    def exit_description(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "it runs"
        return f"it exited with code {code}" if code >= 0 else f"it was killed by signal {-code}"


class LocalProcessDriver(ReplicaDriver):
    """Replicas as processes of the image's own interpreter (the local image builder's virtualenv)."""

    kind = "local"

    def validate(self, image: ImageRecord) -> None:
        python = image.properties.get("local.python")
        if image.builder != "local" or not python:
            raise ValidationError(
                f"Image '{image.id}' was built by the {image.builder!r} builder; the local deployment target "
                "serves images of the 'local' builder (use target='docker' for Docker images)"
            )
        if not Path(python).exists():
            raise ValidationError(
                f"The environment of image '{image.id}' is not on this machine ({python}); build the image here"
            )
        if not image.location or not Path(image.location).is_dir():
            raise ValidationError(f"The bundle of image '{image.id}' is not on this machine ({image.location})")

    def image_payload(self, image: ImageRecord) -> dict[str, Any]:
        return {"id": image.id, "bundle": image.location, "python": image.properties["local.python"]}

    def start(self, spec: ReplicaSpec) -> Replica:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            spec.image["python"], "-m", SCORING_MODULE, "--bundle", spec.image["bundle"],
            "--host", "127.0.0.1", "--port", str(spec.port), "--config", str(spec.config_dir / "scoring.json"),
            "--log-level", REPLICA_LOG_LEVEL,
        ]
        env = replica_environment(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # what run() prints reaches the log at once (as in the Docker images)
        if spec.cpu_cores:
            threads = str(max(1, math.ceil(spec.cpu_cores)))
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[name] = threads
        memory = int(spec.memory_gb * (1 << 30)) if spec.memory_gb else None
        with open(spec.log_path, "ab") as out:
            proc = subprocess.Popen(
                command, cwd=spec.log_path.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                preexec_fn=lambda: _child_setup(memory),  # no imports or locks in there
            )
        return ProcessReplica(spec, proc)

    def cleanup(self, workspace: str, deployment: str, runtime: dict[str, Any]) -> None:
        config = str(deployment_dir(workspace, deployment) / SCORING_CONFIG)
        for replica in runtime.get("replicas") or []:
            pid = replica.get("pid")
            # After a reboot a recorded pid may be anyone's: only this deployment's replica is killed.
            if isinstance(pid, int) and process_alive(pid, (SCORING_MODULE, config)):
                log.info("Stopping replica pid %s left by a previous supervisor", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


# Loaded here, not in the forked child: the supervisor has threads, so the child must not import.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _child_setup(memory_bytes: int | None) -> None:
    """In the replica, before exec: die with the supervisor, cap the data segment, and take SIGTERM
    (the mask survives exec; a supervisor starts its create's replicas while it blocks SIGTERM)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM,))
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))  # SIGTERM when the supervisor dies
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
