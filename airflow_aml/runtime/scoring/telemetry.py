"""Request telemetry and model data collection: one record per ``/score`` request.

``TelemetrySink`` is the plug; the default ``JsonlTelemetrySink`` appends JSON lines to a file.
``record`` runs on the request path, so it only queues: a background thread writes the queue once
a second. The queue is bounded (records and bytes); when it is full, records are dropped and
counted rather than slowing requests down or growing without bound.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class TelemetrySink(Protocol):
    def record(
        self, request_id: str, status: int, latency_ms: float, input_sample: str | None, output_sample: str | None
    ) -> None:
        """Take one request's outcome; must return at once (it is called on the event loop)."""


class JsonlTelemetrySink:
    """Appends ``{"time", "request_id", "status", "latency_ms", "input", "output"}`` lines to ``path``."""

    def __init__(
        self, path: str | Path, *, flush_interval: float = 1.0, max_records: int = 10_000,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._interval = flush_interval
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._pending: deque[tuple[float, str, int, float, str | None, str | None]] = deque()
        self._pending_bytes = 0
        self._lock = threading.Lock()  # guards _pending, _pending_bytes and dropped
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aml-telemetry", daemon=True)
        self._thread.start()

    def record(
        self, request_id: str, status: int, latency_ms: float, input_sample: str | None, output_sample: str | None
    ) -> None:
        size = len(input_sample or "") + len(output_sample or "")
        with self._lock:
            if len(self._pending) >= self._max_records or self._pending_bytes + size > self._max_bytes:
                self.dropped += 1
                return
            self._pending.append((time.time(), request_id, status, latency_ms, input_sample, output_sample))
            self._pending_bytes += size

    def flush(self) -> None:
        """Write what is queued now (the background thread does this every ``flush_interval``)."""
        with self._write_lock:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
                self._pending_bytes = 0
            if not batch:
                return
            lines = [
                json.dumps({
                    "time": at, "request_id": request_id, "status": status, "latency_ms": round(latency_ms, 3),
                    "input": input_sample, "output": output_sample,
                })
                for at, request_id, status, latency_ms, input_sample, output_sample in batch
            ]
            try:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            except OSError as exc:  # a full disk loses telemetry, never requests
                with self._lock:
                    self.dropped += len(batch)
                log.warning("Telemetry: cannot write %s: %s", self.path, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
