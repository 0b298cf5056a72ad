"""Replicas: the scoring-server instances a deployment's supervisor starts, health-checks and stops.

A deployment target is a ``ReplicaDriver``: ``local`` starts each replica as a process in the
image's environment, ``docker`` as a container of the image (``deployments/docker.py``). Both
serve ``python -m airflow_aml.runtime.scoring`` on a port of 127.0.0.1 and read their config from
the deployment's ``config/scoring.json`` (key rotation without restart); everything above the
driver (the load-balancing front, rolling updates, autoscaling, health checks) is shared.

A new target kind is a subclass registered with ``register_replica_driver``; kinds whose module
is not imported yet are imported on first use (``_BUILTIN_MODULES``).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import importlib
import logging
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import ValidationError

log = logging.getLogger(__name__)

DEFAULT_TARGET = "local"
SCORING_MODULE = "airflow_aml.runtime.scoring"


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica to start. ``image`` is what the driver's ``image_payload`` returned."""

    workspace: str
    deployment: str
    generation: int
    index: int
    port: int
    image: dict[str, Any]
    config_dir: Path  # holds scoring.json
    log_path: Path
    cpu_cores: float | None = None
    memory_gb: float | None = None

    @property
    def label(self) -> str:
        return f"{self.deployment}/g{self.generation}-r{self.index}"


class Replica(abc.ABC):
    """A started replica. ``alive`` and ``stop`` must be safe to call at any time, repeatedly."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.port = spec.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the replica's process or container still runs."""

    @abc.abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM: in-flight requests finish), forced after ``timeout`` seconds."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON for the deployment's runtime record (pid or container id ...)."""

    def exit_description(self) -> str:
        return "it stopped"


class ReplicaDriver(abc.ABC):
    kind: ClassVar[str] = ""

    @abc.abstractmethod
    def validate(self, image: ImageRecord) -> None:
        """ValidationError when this target cannot serve ``image`` (wrong builder, not built ...)."""

    @abc.abstractmethod
    def image_payload(self, image: ImageRecord) -> dict[str, Any]:
        """What ``start`` needs to know of the image (JSON, written to the supervisor's desired state)."""

    @abc.abstractmethod
    def start(self, spec: ReplicaSpec) -> Replica:
        """Start one replica (do not wait for it to be ready); raise AmlError if it cannot start."""

    def cleanup(self, workspace: str, deployment: str, runtime: dict[str, Any]) -> None:  # noqa: B027
        """Stop replicas a previous supervisor left behind (it was killed); ``runtime`` is the
        deployment's last recorded runtime state."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the driver holds (an engine client ...); called when the supervisor exits."""


class ProcessReplica(Replica):
    def __init__(self, spec: ReplicaSpec, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(spec)
        self.proc = proc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        from airflow_aml.compute.process import kill_process_group

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
            "--log-level", "warning",
        ]
        env = replica_environment(os.environ)
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
        from airflow_aml.deployments.paths import SCORING_CONFIG, deployment_dir

        config = str(deployment_dir(workspace, deployment) / SCORING_CONFIG)
        for replica in runtime.get("replicas") or []:
            pid = replica.get("pid")
            # After a reboot a recorded pid may be anyone's: only this deployment's replica is killed.
            if isinstance(pid, int) and _is_scoring_process(pid, config):
                log.info("Stopping replica pid %s left by a previous supervisor", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


# Loaded here, not in the forked child: the supervisor has threads, so the child must not import.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _child_setup(memory_bytes: int | None) -> None:
    """In the replica, before exec: die with the supervisor, and cap the data segment."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))  # SIGTERM when the supervisor dies
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))


def _is_scoring_process(pid: int, config_path: str) -> bool:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SCORING_MODULE.encode() in cmdline and config_path.encode() in cmdline


# What a replica (user code) must not inherit from the supervisor: the store URI (it may carry a
# password), the deployer's identity, the key that decrypts every workspace secret, Airflow's
# configuration and connections.
_PRIVATE_PREFIXES = ("AIRFLOW", "AML_")
_KEPT_AML_VARIABLES = frozenset({"AML_PROGRESS"})


def replica_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment minus what is private to the workspace and to Airflow."""
    return {
        key: value for key, value in environ.items()
        if key in _KEPT_AML_VARIABLES or not key.startswith(_PRIVATE_PREFIXES)
    }


def free_port() -> int:
    """A port of 127.0.0.1 free right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ----------------------------------------------------------------------------- registry
_DRIVERS: dict[str, type[ReplicaDriver]] = {"local": LocalProcessDriver}
_BUILTIN_MODULES = {"docker": "airflow_aml.deployments.docker"}


def register_replica_driver(kind: str, cls: type[ReplicaDriver]) -> None:
    _DRIVERS[kind] = cls


def deployment_target_kinds() -> list[str]:
    return sorted(set(_DRIVERS) | set(_BUILTIN_MODULES))


def build_replica_driver(kind: str) -> ReplicaDriver:
    if kind not in _DRIVERS and kind in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[kind])
        except ImportError as exc:
            raise ValidationError(
                f"The {kind!r} deployment target needs an optional dependency: {exc} "
                f"(pip install 'airflow-aml[{kind}]')"
            ) from exc
    if kind not in _DRIVERS:
        raise ValidationError(f"Unknown deployment target {kind!r}; known: {', '.join(deployment_target_kinds())}")
    return _DRIVERS[kind]()
