"""What every deployment target implements: a ``ReplicaDriver`` that starts ``Replica``s.

A replica is one scoring-server instance (``python -m airflow_aml.runtime.scoring``) on a port
of 127.0.0.1, reading its config from the deployment's ``config/scoring.json`` (key rotation
without restart). Everything above the driver (the load-balancing front, rolling updates,
autoscaling, health checks) is shared by every target.
"""

from __future__ import annotations

import abc
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from airflow_aml.entities import ImageRecord

log = logging.getLogger(__name__)

SCORING_MODULE = "airflow_aml.runtime.scoring"
# The replicas' log level. "info", not "warning": at warning a healthy replica writes nothing (its
# start, its application startup and "ready" are info lines), so `deployments logs` showed empty
# replica sections. Per-request access lines stay off (the scoring server's own choice).
REPLICA_LOG_LEVEL = "info"


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


