"""Telemetry: the front's request lines summed into the deployment's totals and latency
percentiles, the file rotated when large, and sampled inputs/outputs written to the datastore.

The totals live in ``_telemetry`` (published with the runtime record); ``file_offset`` in them says
how far the file was read, so that a restarted supervisor goes on where the previous one stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Protocol

from airflow_aml.config import ENV_PRINCIPAL, ENV_STORE_URI
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.front import Front
from airflow_aml.deployments.paths import TELEMETRY_FILE
from airflow_aml.runtime.scoring.telemetry import JsonlTelemetrySink

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split

TELEMETRY_INTERVAL = 10.0  # seconds between two collections
TELEMETRY_ROTATE_BYTES = 64 << 20  # requests.jsonl is renamed to requests.jsonl.1 beyond this
_LATENCY_WINDOW = 10_000  # the latest latencies the percentiles are computed over
# Points of the totals over time, one per collection that saw requests: 360 at 10 s is an hour of
# traffic, a few kB in the runtime record, enough for the UI's charts without a time-series store.
HISTORY_POINTS = 360


class TelemetryHost(Protocol):
    """What telemetry reads from and keeps on the supervisor."""

    folder: Path
    workspace: str
    name: str
    config: DeploymentConfig
    front: Front
    _sink: Any
    _telemetry: dict[str, Any]
    _telemetry_offset: int
    _latencies: deque[float]

    def _write_samples(self, lines: list[str]) -> None: ...


class TelemetryMixin:
    """The supervisor's telemetry collection; its state is the host's (``TelemetryHost``)."""

    def _open_telemetry(self: TelemetryHost) -> None:
        if self.config.telemetry and self._sink is None:
            self._sink = JsonlTelemetrySink(self.folder / TELEMETRY_FILE)
        self.front.telemetry = self._sink if self.config.telemetry else None

    def _resume_telemetry(self: TelemetryHost, recorded: dict[str, Any]) -> None:
        """Go on from the totals the previous supervisor recorded, at the file offset it had read."""
        offset = int(recorded.get("file_offset") or 0)
        try:
            size = (self.folder / TELEMETRY_FILE).stat().st_size
        except OSError:
            size = 0
        if 0 < offset <= size:
            self._telemetry, self._telemetry_offset = dict(recorded), offset

    def _collect_telemetry(self: TelemetryHost) -> None:
        """Sum the new telemetry lines into the runtime record; send samples to the datastore."""
        if self._sink is not None:
            self._sink.flush()
        path = self.folder / TELEMETRY_FILE
        rotated = False
        if self._telemetry_offset > TELEMETRY_ROTATE_BYTES:
            # Keep one previous file: rename first, then read the renamed file to its end, so that
            # lines the front writes meanwhile land in the new file and none is lost.
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".1"))
                path, rotated = path.with_name(path.name + ".1"), True
        try:
            with path.open("rb") as handle:
                handle.seek(self._telemetry_offset)
                data = handle.read()
        except OSError:
            return
        end = len(data) if rotated else data.rfind(b"\n") + 1
        self._telemetry_offset = 0 if rotated else self._telemetry_offset + end
        if end == 0:
            return
        totals = Counter(self._telemetry.get("status_counts") or {})
        samples: list[str] = []
        last = self._telemetry.get("last_request_at")
        for line in data[:end].splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            totals[str(doc.get("status"))] += 1
            self._latencies.append(float(doc.get("latency_ms") or 0.0))
            last = doc.get("time", last)
            if doc.get("input") is not None:
                samples.append(line.decode("utf-8", "replace"))
        ordered = sorted(self._latencies)

        def pct(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0

        collected = int(self._telemetry.get("samples_collected") or 0)
        if samples:
            collected += len(samples)
            self._write_samples(samples)
        requests = sum(totals.values())
        errors = sum(n for s, n in totals.items() if s.startswith("5"))
        history = [*(self._telemetry.get("history") or []),
                   {"t": round(time.time(), 3), "requests": requests, "errors": errors,
                    "p50": pct(0.5), "p99": pct(0.99)}][-HISTORY_POINTS:]
        self._telemetry = {
            "requests": requests,
            "errors": errors,
            "client_errors": sum(n for s, n in totals.items() if s.startswith("4")),
            "status_counts": dict(totals),
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "window": len(ordered)},
            "last_request_at": last,
            "samples_collected": collected,
            "dropped": int(getattr(self._sink, "dropped", 0) or 0),
            "file_offset": self._telemetry_offset,
            "history": history,
        }

    def _write_samples(self: TelemetryHost, lines: list[str]) -> None:
        # Imported here: only data collection needs the workspace's datastores, and importing them
        # (context, datastores, rich) at start-up delayed every deployment's first replica.
        from airflow_aml.context import WorkspaceContext

        try:
            ws = WorkspaceContext.open(self.workspace, store_uri=os.environ[ENV_STORE_URI],
                                       principal=os.environ[ENV_PRINCIPAL])
            day = time.strftime("%Y-%m-%d", time.gmtime())
            path = f"deployments/{self.name}/collected/{day}/{time.time_ns()}.jsonl"
            ws.get_default_datastore().write_bytes(path, ("\n".join(lines) + "\n").encode())
        except Exception:
            log.exception("Could not write %s collected samples to the datastore", len(lines))
