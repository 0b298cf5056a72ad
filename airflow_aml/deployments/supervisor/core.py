"""``Supervisor``: the front served, the loop that runs the parts, and each new desired state applied.

The parts (rollout, health, telemetry, publishing) are mixins on this one class: see the package
docstring for why. This module keeps what ties them together: the state they share (set up here,
in one place), ``run`` (the front server started, the loop, the shutdown) and ``_apply`` (a new
generation of ``desired.json`` rolled out, scaled or deleted, and its outcome recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.desired import DesiredState, desired_generation, read_desired, write_desired
from airflow_aml.deployments.front import Backend, BackendPool, Front
from airflow_aml.deployments.paths import DESIRED_FILE, SCORING_CONFIG, write_json_atomic
from airflow_aml.deployments.replicas import Replica, ReplicaDriver, build_replica_driver
from airflow_aml.deployments.supervisor.health import HEALTH_INTERVAL, HealthMixin
from airflow_aml.deployments.supervisor.prestart import PrestartedReplicas
from airflow_aml.deployments.supervisor.publishing import PublishingMixin
from airflow_aml.deployments.supervisor.rollout import AUTOSCALE_INTERVAL, TICK, RolloutMixin
from airflow_aml.deployments.supervisor.server import _bind, _front_server
from airflow_aml.deployments.supervisor.telemetry import _LATENCY_WINDOW, TELEMETRY_INTERVAL, TelemetryMixin
from airflow_aml.entities import DeploymentState
from airflow_aml.exceptions import AmlError
from airflow_aml.runtime.scoring.connections import ConnectionLimits

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split


class Supervisor(RolloutMixin, HealthMixin, TelemetryMixin, PublishingMixin):
    def __init__(self, folder: Path, store: Any, prestarted: PrestartedReplicas | None = None) -> None:
        self.folder = folder
        self.store = store
        desired = read_desired(folder)
        if desired is None:
            raise AmlError(f"No readable {DESIRED_FILE} in {folder}")
        self.desired: DesiredState = desired
        self.workspace: str = desired.workspace
        self.name: str = desired.name
        self.driver: ReplicaDriver = build_replica_driver(desired.target)
        self.config = desired.deployment_config
        self.port: int = desired.port
        self.pool = BackendPool()
        self.replicas: dict[Backend, Replica] = {}
        self.template: dict[str, Any] | None = None  # what the current replicas run
        self.serving: DesiredState | None = None  # the desired state they were started from
        self.applied_generation = 0
        self.autoscaler: Autoscaler | None = None
        self.stopping: str | None = None  # why, once the supervisor should stop
        self.deleted = False
        # Replicas __main__ started before this set-up (a local create): the rollout adopts them.
        self.prestarted = prestarted or PrestartedReplicas()
        self._indexes = itertools.count(self.prestarted.next_index)
        self._desired_stat: tuple[int, int, int] | None = None
        self._state: DeploymentState | None = None
        self._published: dict[str, Any] | None = None
        self._restarts: deque[float] = deque()
        self._telemetry_offset = 0
        self._telemetry: dict[str, Any] = {}
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self.limits = ConnectionLimits(header_timeout=self.config.header_timeout_seconds,
                                       max_idle_connections=self.config.max_idle_connections)
        self.front = Front(
            self.pool, request_timeout=self.config.request_timeout_seconds,
            max_request_bytes=self.config.max_request_bytes, body_timeout=self.config.body_timeout_seconds,
            telemetry=None,
            sample_rate=self.config.sample_rate, on_backend_failure=self._backend_failed,
        )
        self._sink: Any = None

    # ------------------------------------------------------------------ main
    async def run(self) -> int:
        try:
            return await self._run()
        finally:
            self.prestarted.release()  # whatever the rollout did not adopt (none after a create)

    async def _run(self) -> int:
        record = await asyncio.to_thread(self._current_record)
        if record is None:
            log.info("Deployment %s no longer exists; nothing to supervise", self.name)
            return 0
        self.driver.cleanup(self.workspace, self.name, record.runtime)
        self._resume_telemetry(record.runtime.get("telemetry") or {})
        self._open_telemetry()
        # This process on the record at once (its pid and host): a waiter elsewhere judges whether
        # the deployment's supervisor lives by it, and the previous supervisor's may be there.
        await self._publish(force=True)
        try:
            sock = _bind(self.port)
        except OSError as exc:
            error = f"Cannot listen on 127.0.0.1:{self.port}: {exc}"
            await self._end(self.desired, ok=False, error=error)
            await self._record(state=DeploymentState.FAILED, error=error)
            return 1
        server = _front_server(self.front, self.limits)
        try:
            await server.start(sock)
            await self._loop()
        except Exception as exc:  # a bug or an unexpected engine error: say so, never die silently
            log.exception("The supervisor of deployment %s failed", self.name)
            error = f"The supervisor failed: {type(exc).__name__}: {exc}; see {self.folder / 'logs'}"
            self.request_stop(error)
            await self._end(self._latest_desired(), ok=False, error=error)
        finally:
            await self._shutdown()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.stop(), timeout=15)
            sock.close()
            if self._sink is not None:
                self._sink.close()
            self.driver.close()
        return 0

    async def _loop(self) -> None:
        next_health = next_scale = time.monotonic()
        next_telemetry = time.monotonic() + TELEMETRY_INTERVAL
        while not self.stopping:
            desired = self._changed_desired()
            if desired is not None and desired.generation > self.applied_generation:
                await self._apply(desired)
                self.prestarted.release()
                if self.stopping:
                    break
            now = time.monotonic()
            await self._probe_starting()
            if now >= next_health:
                next_health = now + HEALTH_INTERVAL
                await self._health()
            if self.autoscaler is not None and now >= next_scale:
                next_scale = now + AUTOSCALE_INTERVAL
                await self._autoscale(now)
            await self._reap_drained()
            if now >= next_telemetry:
                next_telemetry = now + TELEMETRY_INTERVAL
                await asyncio.to_thread(self._collect_telemetry)
            await self._publish()
            await asyncio.sleep(TICK)

    def request_stop(self, reason: str) -> None:
        self.stopping = self.stopping or reason

    # ------------------------------------------------------------------ desired state
    def _changed_desired(self) -> DesiredState | None:
        path = self.folder / DESIRED_FILE
        try:
            st = os.stat(path)
        except OSError:
            return None
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen == self._desired_stat:
            return None
        state = read_desired(self.folder)
        if state is None:
            return None  # being replaced: read at the next tick
        self._desired_stat = seen
        return state

    async def _apply(self, desired: DesiredState) -> None:
        generation = desired.generation
        self.applied_generation = generation
        operation = desired.operation
        log.info("Applying generation %s (%s)", generation, operation)
        if operation == "delete":
            await self._delete(desired)
            return
        config = desired.deployment_config
        template = {
            "image": desired.image, "cpu_cores": config.cpu_cores, "memory_gb": config.memory_gb,
            "max_concurrent_requests": config.max_concurrent_requests,
            "max_queued_requests": config.max_queued_requests,
            "max_batch_size": config.max_batch_size, "max_latency_ms": config.max_latency_ms,
        }
        current = len(self._active())
        if config.autoscale is not None:
            count = min(config.autoscale.max_replicas, max(config.autoscale.min_replicas, current or 0))
        else:
            count = config.replicas
        count = max(count, 1)
        previous = self.config
        self._use_config(config)
        await self._report(desired, 0.1, f"Starting {count} replica(s) of image {desired.image_id}")
        if template != self.template or not self._active():
            ok, error = await self._rollout(desired, template, count)
        else:
            ok, error = await self._scale_to(count, desired)
        image_id = desired.image_id
        if ok:
            self.autoscaler = (
                Autoscaler(config.autoscale, config.max_concurrent_requests) if config.autoscale is not None else None
            )
        elif self._active():
            # The old replicas go on serving, with the configuration they were started with.
            self._use_config(previous)
            await asyncio.to_thread(self._rewrite_scoring_config, previous)
        await self._publish()  # the replicas are on the record before the activity ends
        if ok:
            self.template, self.serving = template, desired
            self._state = DeploymentState.HEALTHY
            await self._record(state=DeploymentState.HEALTHY, serving_image_id=image_id, error="",
                               if_generation=generation)
            await self._end(desired, ok=True, message=(
                f"Deployment '{self.name}' serves image {image_id} with {len(self._active())} replica(s) "
                f"at http://127.0.0.1:{self.port}/score"))
            return
        if self._active():  # the update failed; the previous replicas still serve
            served = self.serving.image_id if self.serving else None
            error = f"Update to generation {generation} (image {image_id}) failed; still serving {served}: {error}"
            await self._record(state=DeploymentState.HEALTHY, image_id=served,
                               config=self.serving.config if self.serving else None, error=error,
                               if_generation=generation)
            if self.serving is not None:  # a restarted supervisor must come back to what serves now,
                # unless a newer generation was asked for meanwhile (that one is applied next).
                write_desired(self.folder, self.serving.replace(generation=generation, operation="restore",
                                                                activity_id=None), only_if_generation=generation)
                self._desired_stat = None
            await self._end(desired, ok=False, error=error)
            return
        error = f"Deployment '{self.name}' failed: {error}"
        await self._record(state=DeploymentState.FAILED, error=error, if_generation=generation)
        await self._end(desired, ok=False, error=error)
        self.request_stop("the deployment failed")

    def _use_config(self, config: DeploymentConfig) -> None:
        self.front.request_timeout = config.request_timeout_seconds
        self.front.max_request_bytes = config.max_request_bytes
        self.front.body_timeout = config.body_timeout_seconds
        self.limits.header_timeout = config.header_timeout_seconds
        self.limits.max_idle_connections = config.max_idle_connections
        self.front.sample_rate = config.sample_rate
        self.config = config
        self._open_telemetry()

    def _rewrite_scoring_config(self, config: DeploymentConfig) -> None:
        """The replicas' scoring.json from ``config`` and the key hashes on record (the SDK wrote
        the failed update's settings into it before the rollout)."""
        record = self._current_record()
        if record is None:
            return
        restored = config.scoring_config(record.primary_key_hash, record.secondary_key_hash)
        write_json_atomic(self.folder / SCORING_CONFIG, restored.model_dump(mode="json"), mode=0o644)

    def _newer_desired(self) -> bool:
        """Whether a newer generation than the one being applied waits (cheap: one small read)."""
        return desired_generation(self.folder) > self.applied_generation

    def _latest_desired(self) -> DesiredState:
        return read_desired(self.folder) or self.desired

    # ------------------------------------------------------------------ delete / stop
    async def _delete(self, desired: DesiredState) -> None:
        await self._report(desired, 0.2, "Draining and stopping the replicas")
        await self._drain(list(self.pool.backends))
        await asyncio.to_thread(self._collect_telemetry)
        self._delete_record()
        self.deleted = True
        await self._end(desired, ok=True, message=f"Deployment '{self.name}' deleted")
        self.request_stop("deleted")

    async def _shutdown(self) -> None:
        if self.pool.backends:
            await self._drain(list(self.pool.backends))
        if self.deleted:
            return  # main() removes the folder last: its pid file says the supervisor still runs
        if self.stopping and self.stopping != "the deployment failed":
            await self._record(state=DeploymentState.UNHEALTHY, error=(
                f"The supervisor stopped ({self.stopping}); `airflow-aml deployments restore` starts it again"))
        await self._publish(force=True, running=False)

