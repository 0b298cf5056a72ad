"""Health: replicas probed on /ready, taken out of and back into the rotation, dead ones replaced
(a crash loop slowed down, never given up), and the deployment recorded Healthy or Unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Protocol

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.front import Backend, BackendPool, Front, probe_ready
from airflow_aml.deployments.replicas import Replica
from airflow_aml.entities import DeploymentState

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split

HEALTH_INTERVAL = 2.0  # seconds between two health checks (every replica probed)
UNREADY_AFTER = 2  # consecutive failed /ready probes before a replica leaves the rotation
CRASH_LOOP_DELAY = 15.0  # seconds between replica starts once 5 were started within a minute


class HealthHost(Protocol):
    """What the health checks read from and change on the supervisor."""

    name: str
    config: DeploymentConfig
    front: Front
    pool: BackendPool
    replicas: dict[Backend, Replica]
    template: dict[str, Any] | None
    applied_generation: int
    autoscaler: Autoscaler | None
    _state: DeploymentState | None
    _restarts: deque[float]

    def _active(self) -> list[Backend]: ...
    def _start_replica(self, template: dict[str, Any], generation: int) -> Backend: ...
    async def _stop_backends(self, backends: list[Backend]) -> None: ...
    async def _record(self, **changes: Any) -> None: ...
    async def _probe(self, backends: list[Backend]) -> None: ...
    async def _top_up(self) -> None: ...
    def _wanted_replicas(self) -> int: ...


class HealthMixin:
    """The supervisor's health checks; their state is the host's (``HealthHost``)."""

    async def _probe(self: HealthHost, backends: list[Backend]) -> None:
        session = self.front.session
        if session is None:
            return
        results = await asyncio.gather(*(probe_ready(session, b) for b in backends))
        for backend, (ok, reason) in zip(backends, results, strict=True):
            backend.info["last_probe"] = reason
            if ok:
                backend.failures = 0
                backend.ready = True
                backend.info["was_ready"] = True
            else:
                backend.failures += 1
                if backend.failures >= UNREADY_AFTER and backend.ready:
                    log.warning("Replica %s is not ready: %s", backend.key, reason)
                    backend.ready = False

    async def _probe_starting(self: HealthHost) -> None:
        starting = [b for b in self.pool.backends if not b.ready and not b.draining]
        if starting:
            await self._probe(starting)

    async def _health(self: HealthHost) -> None:
        if self.template is None:
            return
        for backend in list(self._active()):
            replica = self.replicas.get(backend)
            if replica is None or await asyncio.to_thread(replica.alive):
                continue
            log.warning("Replica %s died (%s)", backend.key, await asyncio.to_thread(replica.exit_description))
            await self._stop_backends([backend])
        await self._top_up()
        await self._probe(self._active())
        wanted = self._wanted_replicas()
        active = self._active()
        ready = sum(1 for b in active if b.ready)
        # A replica still starting (the autoscaler's, a replacement) is not a fault yet; one that was
        # ready and stopped answering, or never got ready in time, is.
        startup = self.config.startup_timeout_seconds
        faulty = [b for b in active if not b.ready
                  and (b.info.get("was_ready") or time.time() - b.info.get("started_at", 0) > startup)]
        state = DeploymentState.HEALTHY if ready >= wanted and not faulty else DeploymentState.UNHEALTHY
        if state is not self._state:
            self._state = state
            error = "" if state is DeploymentState.HEALTHY else (
                f"{ready} of {max(wanted, len(active))} replica(s) ready"
                + (f"; {faulty[0].key}: {faulty[0].info.get('last_probe', '')}" if faulty else ""))
            log.info("Deployment %s is %s %s", self.name, state.value, error)
            await self._record(state=state, error=error)

    async def _top_up(self: HealthHost) -> None:
        """Start replicas until there are as many as wanted (dead ones replaced). A crash loop is
        slowed down, never given up: beyond 5 starts a minute, one start every 15 s."""
        missing = self._wanted_replicas() - len(self._active())
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - 60:
            self._restarts.popleft()
        if missing <= 0 or self.template is None:
            return
        if len(self._restarts) >= 5 and now - self._restarts[-1] < CRASH_LOOP_DELAY:
            return
        for _ in range(missing if len(self._restarts) < 5 else 1):
            self._restarts.append(time.monotonic())
            try:
                backend = await asyncio.to_thread(self._start_replica, self.template, self.applied_generation)
            except Exception as exc:
                log.error("Could not start a replica: %s", exc)
                return
            log.info("Started replica %s to replace one that is gone", backend.key)

    def _wanted_replicas(self: HealthHost) -> int:
        if self.autoscaler is not None:
            return self.config.autoscale.min_replicas if self.config.autoscale else 1
        return self.config.replicas

    def _backend_failed(self: HealthHost, backend: Backend, reason: str) -> None:
        """The front's callback when a request to ``backend`` failed (it counted the failure)."""
        if backend.failures >= UNREADY_AFTER and backend.ready:
            log.warning("Replica %s taken out of the rotation: %s", backend.key, reason)
            backend.ready = False
