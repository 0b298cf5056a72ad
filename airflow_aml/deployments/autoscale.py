"""The autoscaler's decision, kept pure (time and load come in as arguments) so it is testable.

Kubernetes' HPA rule: desired = ceil(current x utilisation / target), within [min, max], ignored
while within 10 % of the target. Up at once; down only after the lower count has been enough
for ``scale_down_delay_seconds`` without a break.
"""

from __future__ import annotations

import math
from collections import deque

from airflow_aml.deployments.config import AutoscaleConfig

TOLERANCE = 0.1


class Autoscaler:
    def __init__(self, config: AutoscaleConfig, max_concurrent_per_replica: int) -> None:
        self.config = config
        self.capacity = max_concurrent_per_replica
        self._samples: deque[tuple[float, int]] = deque()
        self._low_since: float | None = None
        self.utilization = 0.0

    def observe(self, now: float, inflight: int) -> None:
        """One sample of the requests in progress across all replicas."""
        self._samples.append((now, inflight))
        while self._samples and self._samples[0][0] < now - self.config.window_seconds:
            self._samples.popleft()

    def decide(self, now: float, current: int) -> int:
        """How many replicas there should be now."""
        cfg = self.config
        bounded = min(cfg.max_replicas, max(cfg.min_replicas, current))
        if bounded != current or not self._samples:
            return bounded
        load = sum(n for _, n in self._samples) / len(self._samples)
        self.utilization = load / (current * self.capacity)
        ratio = self.utilization / cfg.target_utilization
        if abs(ratio - 1.0) <= TOLERANCE:
            self._low_since = None
            return current
        desired = min(cfg.max_replicas, max(cfg.min_replicas, math.ceil(current * ratio)))
        if desired > current:
            self._low_since = None
            self._samples.clear()  # the next decision judges the new replica count's load
            return desired
        if desired < current:
            if self._low_since is None:
                self._low_since = now
            if now - self._low_since >= cfg.scale_down_delay_seconds:
                self._low_since = None
                self._samples.clear()
                return desired
            return current
        self._low_since = None
        return current
