"""Small in-memory stand-ins for the parts of the store and workspace the compute code touches."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_aml.entities import ComputeTargetRecord, LogChunk
from airflow_aml.exceptions import ComputeTargetNotFoundError


@dataclass
class FakeRunState:
    cancel_requested: bool = False


@dataclass
class FakeStore:
    """Logs, cancel flags and compute targets; enough for ScriptRunner, LogBatcher, the registry."""

    targets: dict[str, ComputeTargetRecord] = field(default_factory=dict)
    runs: dict[str, FakeRunState] = field(default_factory=dict)
    chunks: list[LogChunk] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get_run(self, run_id: str) -> FakeRunState:
        return self.runs.setdefault(run_id, FakeRunState())

    def append_log(self, run_id: str, stream: str, text: str) -> None:
        with self.lock:
            self.chunks.append(LogChunk(seq=len(self.chunks) + 1, stream=stream, text=text, timestamp=time.time()))

    def text(self, stream: str | None = None) -> str:
        with self.lock:
            return "".join(c.text for c in self.chunks if stream is None or c.stream == stream)

    def get_compute_target(self, workspace: str, name: str) -> ComputeTargetRecord:
        try:
            return self.targets[name]
        except KeyError:
            raise ComputeTargetNotFoundError(
                f"Compute target {name!r} not found in workspace {workspace!r}"
            ) from None

    def list_compute_targets(self, workspace: str) -> list[ComputeTargetRecord]:
        return sorted(self.targets.values(), key=lambda r: r.name)


@dataclass
class FakeWorkspace:
    store: Any
    name: str = "ws"
    store_uri: str = "sqlite:////nonexistent/aml.db"


def target_record(name: str, kind: str, config: dict[str, Any] | None = None) -> ComputeTargetRecord:
    return ComputeTargetRecord(workspace="ws", name=name, kind=kind, config=config or {},
                               created_at=datetime.now(UTC))
