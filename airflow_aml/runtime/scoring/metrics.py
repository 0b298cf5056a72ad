"""Prometheus metrics of ``/score``, in the text exposition format, written by hand.

Four series are all a scoring service needs (requests by status, latency, errors, in flight);
a few counters are cheaper than ``prometheus_client``'s registry and locks on the request path,
and images need no extra package. Counters are updated from the event loop thread only, so they
need no lock. With ``--workers N`` each worker process counts its own requests.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ScoringMetrics:
    def __init__(self, in_flight: Callable[[], int], ready: Callable[[], bool]) -> None:
        self._in_flight = in_flight
        self._ready = ready
        self.requests: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._latency_sum = 0.0
        self._latency_count = 0
        self.telemetry_dropped: Callable[[], int] = lambda: 0
        # Counted by the batching workers (threads), hence the lock: taken once per batch.
        self._batch_lock = threading.Lock()
        self.batches = 0
        self.batched_requests = 0

    def observe(self, status: int, seconds: float) -> None:
        self.requests[status] += 1
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    def batch(self, size: int) -> None:
        with self._batch_lock:
            self.batches += 1
            self.batched_requests += size

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def render(self) -> str:
        lines = [
            "# HELP aml_scoring_requests_total Scoring requests answered, by HTTP status code.",
            "# TYPE aml_scoring_requests_total counter",
            *(f'aml_scoring_requests_total{{code="{code}"}} {n}' for code, n in sorted(self.requests.items())),
            "# HELP aml_scoring_request_duration_seconds Time from request to response of /score.",
            "# TYPE aml_scoring_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), self._buckets, strict=True):
            cumulative += count
            lines.append(f'aml_scoring_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [
            f"aml_scoring_request_duration_seconds_sum {self._latency_sum!r}",
            f"aml_scoring_request_duration_seconds_count {self._latency_count}",
            "# HELP aml_scoring_errors_total Requests that failed on the server side, by kind.",
            "# TYPE aml_scoring_errors_total counter",
            *(f'aml_scoring_errors_total{{kind="{kind}"}} {n}' for kind, n in sorted(self.errors.items())),
            "# HELP aml_scoring_in_flight Scoring requests being handled, including run() calls past their timeout.",
            "# TYPE aml_scoring_in_flight gauge",
            f"aml_scoring_in_flight {self._in_flight()}",
            "# HELP aml_scoring_ready 1 once init() succeeded.",
            "# TYPE aml_scoring_ready gauge",
            f"aml_scoring_ready {int(self._ready())}",
            "# HELP aml_scoring_batches_total Calls that scored waiting requests together (adaptive batching).",
            "# TYPE aml_scoring_batches_total counter",
            f"aml_scoring_batches_total {self.batches}",
            "# HELP aml_scoring_batched_requests_total Requests scored in those calls (/ batches: the mean size).",
            "# TYPE aml_scoring_batched_requests_total counter",
            f"aml_scoring_batched_requests_total {self.batched_requests}",
            "# HELP aml_scoring_telemetry_dropped_total Telemetry records dropped because the queue was full.",
            "# TYPE aml_scoring_telemetry_dropped_total counter",
            f"aml_scoring_telemetry_dropped_total {self.telemetry_dropped()}",
        ]
        return "\n".join(lines) + "\n"
