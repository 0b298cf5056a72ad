"""Replicas started, rolled over, scaled (asked for or by the autoscaler), drained and stopped.

A rolling update starts the new replicas and waits until all are ready before it drains and stops
the old ones, so that no request fails; a scale down drains the newest first and reaps them once
their last request ended.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.desired import DesiredState
from airflow_aml.deployments.front import Backend, BackendPool
from airflow_aml.deployments.replicas import Replica, ReplicaDriver
from airflow_aml.deployments.supervisor.prestart import PrestartedReplicas, replica_spec

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split

TICK = 0.25  # the supervisor's loop period
# How often a rollout probes its new replicas' /ready: the first request waits on it, and a
# refused connection or a 503 costs the replica well under a millisecond.
STARTUP_PROBE = 0.05
AUTOSCALE_INTERVAL = 1.0  # seconds between two autoscaling decisions
DRAIN_GRACE = 10.0  # seconds beyond the request timeout to wait for in-flight requests
STOP_TIMEOUT = 10.0
_LOG_TAIL = 25


class RolloutHost(Protocol):
    """What the rollout reads from and changes on the supervisor."""

    folder: Path
    workspace: str
    name: str
    driver: ReplicaDriver
    config: DeploymentConfig
    pool: BackendPool
    replicas: dict[Backend, Replica]
    template: dict[str, Any] | None
    applied_generation: int
    autoscaler: Autoscaler | None
    stopping: str | None
    prestarted: PrestartedReplicas
    _indexes: itertools.count[int]

    def _active(self) -> list[Backend]: ...
    def _start_replica(self, template: dict[str, Any], generation: int) -> Backend: ...
    async def _scale_to(self, count: int, desired: DesiredState | None = None) -> tuple[bool, str]: ...
    async def _drain(self, backends: list[Backend]) -> None: ...
    async def _stop_backends(self, backends: list[Backend]) -> None: ...
    async def _probe(self, backends: list[Backend]) -> None: ...
    async def _report(self, desired: DesiredState, fraction: float, message: str) -> None: ...
    def _newer_desired(self) -> bool: ...


class RolloutMixin:
    """The supervisor's replica lifecycle; its state is the host's (``RolloutHost``)."""

    def _active(self: RolloutHost) -> list[Backend]:
        return [b for b in self.pool.backends if not b.draining]

    def _start_replica(self: RolloutHost, template: dict[str, Any], generation: int) -> Backend:
        ahead = self.prestarted.take(template, generation)  # a create's, started before the set-up
        if ahead is not None:
            spec, replica, started_at = ahead.spec, ahead.replica, ahead.started_at
        else:
            index = next(self._indexes)
            spec = replica_spec(self.folder, self.workspace, self.name, generation, index, template["image"],
                                template["cpu_cores"], template["memory_gb"])
            replica, started_at = self.driver.start(spec), time.time()
        backend = Backend(key=spec.label, port=spec.port, info={
            "generation": generation, "index": spec.index, "image": template["image"].get("id"),
            "log": str(spec.log_path), "started_at": started_at, **replica.describe(),
        })
        backend.info["template"] = template
        self.pool.add(backend)
        self.replicas[backend] = replica
        log.info("%s replica %s on port %s (%s)", "Adopted" if ahead else "Started", spec.label, spec.port,
                 replica.describe())
        return backend

    async def _rollout(
        self: RolloutHost, desired: DesiredState, template: dict[str, Any], count: int
    ) -> tuple[bool, str]:
        """Start ``count`` new replicas; once all are ready, drain and stop the old ones."""
        generation = desired.generation
        old = self._active()
        new: list[Backend] = []
        try:
            for _ in range(count):
                new.append(await asyncio.to_thread(self._start_replica, template, generation))
        except Exception as exc:
            await self._stop_backends(new)
            return False, f"Could not start a replica: {exc}"
        deadline = time.monotonic() + self.config.startup_timeout_seconds
        reported = -1
        while True:
            ready = sum(1 for b in new if b.ready)
            if ready != reported:
                reported = ready
                await self._report(desired, 0.1 + 0.8 * ready / count, f"{ready} of {count} new replica(s) ready")
            if ready == count:
                break
            for backend in new:
                if backend.info.get("init_failed"):
                    error = (f"Replica {backend.key}: init() failed: {backend.info['init_failed']}; its log ends "
                             f"with:\n{_tail(Path(backend.info['log']))}")
                    await self._stop_backends(new)
                    return False, error
                if not await asyncio.to_thread(self.replicas[backend].alive):  # Docker: an engine call
                    replica = self.replicas[backend]
                    error = (f"Replica {backend.key} stopped before it was ready ({replica.exit_description()}); "
                             f"its log ends with:\n{_tail(Path(backend.info['log']))}")
                    await self._stop_backends(new)
                    return False, error
            if self._newer_desired():
                await self._stop_backends(new)
                return False, "superseded by a newer generation before its replicas were ready"
            if time.monotonic() > deadline or self.stopping:
                waiting = [b for b in new if not b.ready]
                reason = "the supervisor is stopping" if self.stopping else (
                    f"{len(waiting)} replica(s) not ready after {self.config.startup_timeout_seconds:.0f} s")
                detail = waiting[0].info.get("last_probe", "") if waiting else ""
                log_tail = _tail(Path(waiting[0].info["log"])) if waiting else ""
                await self._stop_backends(new)
                return False, f"{reason}: {detail}\n{log_tail}".rstrip()
            await self._probe(new)
            await asyncio.sleep(STARTUP_PROBE)
        if old:
            await self._report(desired, 0.92, f"Draining {len(old)} old replica(s)")
            for backend in old:
                backend.draining = True
            await self._drain(old)
        return True, ""

    async def _scale_to(self: RolloutHost, count: int, desired: DesiredState | None = None) -> tuple[bool, str]:
        active = self._active()
        if count > len(active):
            assert self.template is not None
            generation = desired.generation if desired else self.applied_generation
            started: list[Backend] = []
            try:
                for _ in range(count - len(active)):
                    started.append(await asyncio.to_thread(self._start_replica, self.template, generation))
            except Exception as exc:
                log.error("Could not start a replica: %s", exc)
                await self._stop_backends(started)
                return False, f"Could not start a replica: {exc}"
            if desired is not None:  # an explicit scale waits for the new replicas
                deadline = time.monotonic() + self.config.startup_timeout_seconds
                while not all(b.ready for b in started):
                    if time.monotonic() > deadline:
                        await self._stop_backends(started)
                        return False, f"New replicas not ready after {self.config.startup_timeout_seconds:.0f} s"
                    await self._probe(started)
                    await asyncio.sleep(STARTUP_PROBE)
        elif count < len(active):
            # The newest go first: the oldest have warm caches.
            for backend in sorted(active, key=lambda b: b.info.get("started_at", 0))[count:]:
                backend.draining = True
                backend.info["drain_deadline"] = time.monotonic() + self.config.request_timeout_seconds + DRAIN_GRACE
        return True, ""

    async def _autoscale(self: RolloutHost, now: float) -> None:
        assert self.autoscaler is not None
        self.autoscaler.observe(now, self.pool.inflight)
        current = len(self._active())
        wanted = self.autoscaler.decide(now, current)
        if wanted != current and self.template is not None:
            log.info("Autoscaling from %s to %s replica(s) (utilisation %.0f%%, target %.0f%%)", current, wanted,
                     self.autoscaler.utilization * 100, self.config.autoscale.target_utilization * 100)
            await self._scale_to(wanted)

    async def _drain(self: RolloutHost, backends: list[Backend]) -> None:
        for backend in backends:  # out of the rotation first, or new requests keep them busy
            backend.draining = True
        deadline = time.monotonic() + self.config.request_timeout_seconds + DRAIN_GRACE
        while any(b.inflight for b in backends) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._stop_backends(backends)

    async def _reap_drained(self: RolloutHost) -> None:
        """Stop replicas the autoscaler drained once their last request ended."""
        done = [b for b in self.pool.backends if b.draining and "drain_deadline" in b.info
                and (b.inflight == 0 or time.monotonic() > b.info["drain_deadline"])]
        if done:
            await self._stop_backends(done)

    async def _stop_backends(self: RolloutHost, backends: list[Backend]) -> None:
        for backend in backends:
            backend.draining = True
        replicas = [self.replicas.pop(b) for b in backends if b in self.replicas]
        for backend in backends:
            self.pool.remove(backend)
        await asyncio.gather(*(asyncio.to_thread(r.stop, STOP_TIMEOUT) for r in replicas))
        for replica in replicas:
            log.info("Stopped replica %s", replica.spec.label)


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    """The end of a replica's log, for the error that says why it never got ready."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
