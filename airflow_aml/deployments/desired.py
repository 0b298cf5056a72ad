"""``desired.json``: what a deployment's supervisor must run, written by the SDK, read by both.

One typed document shared by the two sides, so that neither guesses the other's keys. Every
create/update/delete/restore writes a new one with the deployment's next ``generation``; the
supervisor applies only the newest generation it sees. Writers serialise on ``desired.lock``, so
that no write ever replaces a newer one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.paths import DESIRED_FILE, write_json_atomic

Operation = Literal["create", "update", "delete", "restore"]


@dataclass(frozen=True)
class DesiredState:
    workspace: str
    name: str
    target: str  # the deployment target kind ("local", "docker")
    generation: int
    operation: Operation
    activity_id: str | None  # the activity the supervisor reports this generation on
    image: dict[str, Any]  # what the target's replica driver needs of the image (its image_payload)
    config: dict[str, Any] = field(default_factory=dict)  # DeploymentConfig as JSON
    port: int = 0  # the front's port on 127.0.0.1

    @property
    def image_id(self) -> str:
        return str(self.image.get("id"))

    @property
    def deployment_config(self) -> DeploymentConfig:
        return DeploymentConfig.model_validate(self.config)

    def replace(self, **changes: Any) -> DesiredState:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DesiredState:
        return cls(
            workspace=str(doc["workspace"]), name=str(doc["name"]), target=str(doc["target"]),
            generation=int(doc["generation"]), operation=doc.get("operation", "update"),
            activity_id=doc.get("activity_id"), image=dict(doc.get("image") or {}),
            config=dict(doc.get("config") or {}), port=int(doc.get("port") or 0),
        )


def read_desired(folder: Path) -> DesiredState | None:
    """The desired state in ``folder``; None when there is none (or it is being replaced)."""
    try:
        return DesiredState.from_json(json.loads((folder / DESIRED_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def desired_generation(folder: Path) -> int:
    """The generation on file (0 when none): cheap, for a supervisor checking for newer work."""
    state = read_desired(folder)
    return state.generation if state is not None else 0


def write_desired(folder: Path, state: DesiredState, *, only_if_generation: int | None = None) -> bool:
    """Replace ``desired.json`` with ``state`` unless it already holds a newer generation (or, with
    ``only_if_generation``, any other generation than that one); whether it was written."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "desired.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = desired_generation(folder)
        if only_if_generation is not None and current != only_if_generation:
            return False
        if current > state.generation:
            return False
        write_json_atomic(folder / DESIRED_FILE, state.to_json(), mode=0o600)
        return True
