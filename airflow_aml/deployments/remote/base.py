"""What a remote deployment target implements: the cluster (or ACI) runs and supervises the
replicas; the SDK only applies the desired objects and reads their status back.

There is no supervisor process for a remote target: ``apply`` creates or replaces the objects and
returns at once, and every later look (``status``) moves the deployment's record and activity on
(``lifecycle.sync``), so a caller that crashes mid-wait loses nothing.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.runtime.scoring.config import ScoringConfig

# In every remote replica: the scoring server on this port, config read from this folder.
SCORING_PORT = 5001
CONFIG_DIR = "/var/aml/config"
CONFIG_FILE = "scoring.json"
BUNDLE_DIR = "/var/aml/bundle"  # where the docker builder puts the bundle (images/docker/dockerfile.py)

Phase = Literal["healthy", "progressing", "failed", "gone"]


@dataclass(frozen=True)
class RemoteSpec:
    """Everything a target needs to apply one generation of a deployment."""

    workspace: str
    name: str
    image_id: str  # "name:version" of the registered image
    image: str  # the Docker reference the cluster pulls (registry prefix + the builder's tag)
    config: DeploymentConfig
    scoring: ScoringConfig  # key hashes only
    generation: int


@dataclass(frozen=True)
class RemoteStatus:
    phase: Phase
    reason: str = ""  # why it failed or what it waits for
    scoring_uri: str | None = None
    ready: int = 0
    details: dict[str, Any] | None = None


def scoring_command(port: int = SCORING_PORT) -> list[str]:
    """The replica's command: the image's scoring server on every interface (the pod's or group's)."""
    return ["python", "-m", "airflow_aml.runtime.scoring", "--bundle", BUNDLE_DIR, "--host", "0.0.0.0",
            "--port", str(port), "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--log-level", "info"]


class RemoteTarget(abc.ABC):
    kind: ClassVar[str] = ""

    @abc.abstractmethod
    def validate(self, spec: RemoteSpec) -> None:
        """Build every request of ``spec`` and check it (schemas, SDK models); ValidationError if
        one would be refused. Called before anything is created."""

    @abc.abstractmethod
    def apply(self, spec: RemoteSpec) -> dict[str, Any]:
        """Create or replace the deployment's objects; the runtime facts to record (names)."""

    @abc.abstractmethod
    def status(self, name: str) -> RemoteStatus:
        """Where the rollout of ``name`` stands now."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove every object of ``name``; what is gone already is fine."""

    @abc.abstractmethod
    def update_keys(self, spec: RemoteSpec) -> None:
        """Make the replicas refuse the old key hashes (``spec.scoring`` holds the new ones)."""

    def logs(self, name: str, *, tail: int | None = 200) -> str:
        """The replicas' output; targets that cannot read it say so."""
        return f"(logs of deployment '{name}' are not available from the {self.kind} target)"
