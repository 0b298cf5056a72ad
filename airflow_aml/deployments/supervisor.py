"""The supervisor of one deployment: ``python -m airflow_aml.deployments.supervisor --dir DIR``.

Started detached (own session) by the SDK, it outlives the Airflow task that deployed. It
serves the load-balancing front on the deployment's port, starts the replicas through the
target's ``ReplicaDriver``, and then loops every quarter second:

- ``desired.json`` changed to a newer generation -> apply it: a new image or new limits roll out
  (new replicas started and ready before the old ones are drained and stopped, so no request
  fails), a new replica count scales, a delete drains and stops everything;
- health: a replica that died is replaced; /ready is probed every 2 s; the deployment's state is
  Healthy when every replica is ready, Unhealthy otherwise (recorded in the workspace);
- autoscaling between min and max replicas by the front's requests in progress;
- telemetry: the front's request lines are summed into the deployment's runtime record every
  10 s, and sampled inputs/outputs are written to the workspace datastore (data collection).

It reports each create/update/delete on the activity named in ``desired.json``. SIGTERM stops the
replicas and leaves the deployment recorded Unhealthy; ``airflow-aml deployments restore`` (or
any update) starts a supervisor again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.front import Backend, BackendPool, Front, probe_ready
from airflow_aml.deployments.paths import (
    DESIRED_FILE,
    SCORING_CONFIG,
    TELEMETRY_FILE,
    replica_log,
    write_desired,
    write_json_atomic,
)
from airflow_aml.deployments.replicas import Replica, ReplicaDriver, ReplicaSpec, build_replica_driver
from airflow_aml.entities import ActivityStatus, DeploymentState
from airflow_aml.exceptions import AmlError, ConflictError, NotFoundError
from airflow_aml.runtime.context import ENV_PRINCIPAL, ENV_STORE_URI

log = logging.getLogger("airflow_aml.deployments.supervisor")

SUPERVISOR_MODULE = "airflow_aml.deployments.supervisor"
PID_FILE = "supervisor.pid"
LOCK_FILE = "supervisor.lock"
TICK = 0.25
HEALTH_INTERVAL = 2.0
AUTOSCALE_INTERVAL = 1.0
TELEMETRY_INTERVAL = 10.0
TELEMETRY_ROTATE_BYTES = 64 << 20  # requests.jsonl is renamed to requests.jsonl.1 beyond this
UNREADY_AFTER = 2  # consecutive failed /ready probes before a replica leaves the rotation
DRAIN_GRACE = 10.0  # seconds beyond the request timeout to wait for in-flight requests
CRASH_LOOP_DELAY = 15.0  # seconds between replica starts once 5 were started within a minute
STOP_TIMEOUT = 10.0
_LOG_TAIL = 25
_LATENCY_WINDOW = 10_000


class Supervisor:
    def __init__(self, folder: Path, store: Any) -> None:
        self.folder = folder
        self.store = store
        self.desired: dict[str, Any] = _read_json(folder / DESIRED_FILE)
        self.workspace: str = self.desired["workspace"]
        self.name: str = self.desired["name"]
        self.driver: ReplicaDriver = build_replica_driver(self.desired["target"])
        self.config = DeploymentConfig.model_validate(self.desired["config"])
        self.port: int = int(self.desired["port"])
        self.pool = BackendPool()
        self.replicas: dict[Backend, Replica] = {}
        self.template: dict[str, Any] | None = None  # what the current replicas run
        self.serving: dict[str, Any] | None = None  # the desired document they were started from
        self.applied_generation = 0
        self.autoscaler: Autoscaler | None = None
        self.stopping: str | None = None  # why, once the supervisor should stop
        self.deleted = False
        self._indexes = itertools.count()
        self._desired_stat: tuple[int, int, int] | None = None
        self._state: DeploymentState | None = None
        self._published: dict[str, Any] | None = None
        self._restarts: deque[float] = deque()
        self._telemetry_offset = 0
        self._telemetry: dict[str, Any] = {}
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self.front = Front(
            self.pool, request_timeout=self.config.request_timeout_seconds,
            max_request_bytes=self.config.max_request_bytes, telemetry=None,
            sample_rate=self.config.sample_rate, on_backend_failure=self._backend_failed,
        )
        self._sink: Any = None

    # ------------------------------------------------------------------ main
    async def run(self) -> int:
        record = await asyncio.to_thread(self._current_record)
        if record is None:
            log.info("Deployment %s no longer exists; nothing to supervise", self.name)
            return 0
        self.driver.cleanup(self.workspace, self.name, record.runtime)
        self._resume_telemetry(record.runtime.get("telemetry") or {})
        self._open_telemetry()
        try:
            sock = _bind(self.port)
        except OSError as exc:
            error = f"Cannot listen on 127.0.0.1:{self.port}: {exc}"
            await self._end(self.desired, ok=False, error=error)
            await self._record(state=DeploymentState.FAILED, error=error)
            return 1
        server = _front_server(_uvicorn_config(self.front))
        server_task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await self._wait_started(server, server_task)
            await self._loop()
        except Exception as exc:  # a bug or an unexpected engine error: say so, never die silently
            log.exception("The supervisor of deployment %s failed", self.name)
            error = f"The supervisor failed: {type(exc).__name__}: {exc}; see {self.folder / 'logs'}"
            self.request_stop(error)
            await self._end(self._latest_desired(), ok=False, error=error)
        finally:
            await self._shutdown()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server_task, timeout=15)
            sock.close()
            if self._sink is not None:
                self._sink.close()
            self.driver.close()
        return 0

    async def _wait_started(self, server: Any, task: asyncio.Task[Any]) -> None:
        while not server.started:
            if task.done():
                task.result()
                raise AmlError("The front server stopped while starting")
            await asyncio.sleep(0.01)

    async def _loop(self) -> None:
        next_health = next_scale = time.monotonic()
        next_telemetry = time.monotonic() + TELEMETRY_INTERVAL
        while not self.stopping:
            desired = self._changed_desired()
            if desired is not None and int(desired["generation"]) > self.applied_generation:
                await self._apply(desired)
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
    def _changed_desired(self) -> dict[str, Any] | None:
        path = self.folder / DESIRED_FILE
        try:
            st = os.stat(path)
        except OSError:
            return None
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen == self._desired_stat:
            return None
        try:
            doc = _read_json(path)
        except (OSError, ValueError):
            return None  # being replaced: read at the next tick
        self._desired_stat = seen
        return doc

    async def _apply(self, desired: dict[str, Any]) -> None:
        generation = int(desired["generation"])
        self.applied_generation = generation
        operation = desired.get("operation", "update")
        log.info("Applying generation %s (%s)", generation, operation)
        if operation == "delete":
            await self._delete(desired)
            return
        config = DeploymentConfig.model_validate(desired["config"])
        template = {
            "image": desired["image"], "cpu_cores": config.cpu_cores, "memory_gb": config.memory_gb,
            "max_concurrent_requests": config.max_concurrent_requests,
            "max_queued_requests": config.max_queued_requests,
        }
        current = len(self._active())
        if config.autoscale is not None:
            count = min(config.autoscale.max_replicas, max(config.autoscale.min_replicas, current or 0))
        else:
            count = config.replicas
        count = max(count, 1)
        previous = self.config
        self._use_config(config)
        await self._report(desired, 0.1, f"Starting {count} replica(s) of image {desired['image'].get('id')}")
        if template != self.template or not self._active():
            ok, error = await self._rollout(desired, template, count)
        else:
            ok, error = await self._scale_to(count, desired)
        image_id = str(desired["image"].get("id"))
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
            served = (self.serving or {}).get("image", {}).get("id")
            error = f"Update to generation {generation} (image {image_id}) failed; still serving {served}: {error}"
            await self._record(state=DeploymentState.HEALTHY, image_id=served,
                               config=self.serving["config"] if self.serving else None, error=error,
                               if_generation=generation)
            if self.serving is not None:  # a restarted supervisor must come back to what serves now,
                # unless a newer generation was asked for meanwhile (that one is applied next).
                write_desired(self.folder, {**self.serving, "generation": generation, "operation": "restore",
                                            "activity_id": None}, only_if_generation=generation)
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
        try:
            return int(_read_json(self.folder / DESIRED_FILE).get("generation") or 0) > self.applied_generation
        except (OSError, ValueError):
            return False

    def _latest_desired(self) -> dict[str, Any]:
        try:
            return _read_json(self.folder / DESIRED_FILE)
        except (OSError, ValueError):
            return self.desired

    # ------------------------------------------------------------------ replicas
    def _active(self) -> list[Backend]:
        return [b for b in self.pool.backends if not b.draining]

    def _start_replica(self, template: dict[str, Any], generation: int) -> Backend:
        from airflow_aml.deployments.replicas import free_port

        index = next(self._indexes)
        spec = ReplicaSpec(
            workspace=self.workspace, deployment=self.name, generation=generation, index=index, port=free_port(),
            image=dict(template["image"]), config_dir=(self.folder / SCORING_CONFIG).parent,
            log_path=replica_log(self.folder, generation, index),
            cpu_cores=template["cpu_cores"], memory_gb=template["memory_gb"],
        )
        replica = self.driver.start(spec)
        backend = Backend(key=spec.label, port=spec.port, info={
            "generation": generation, "index": index, "image": template["image"].get("id"),
            "log": str(spec.log_path), "started_at": time.time(), **replica.describe(),
        })
        backend.info["template"] = template
        self.pool.add(backend)
        self.replicas[backend] = replica
        log.info("Started replica %s on port %s (%s)", spec.label, spec.port, replica.describe())
        return backend

    async def _rollout(self, desired: dict[str, Any], template: dict[str, Any], count: int) -> tuple[bool, str]:
        """Start ``count`` new replicas; once all are ready, drain and stop the old ones."""
        generation = int(desired["generation"])
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
            await asyncio.sleep(TICK)
        if old:
            await self._report(desired, 0.92, f"Draining {len(old)} old replica(s)")
            for backend in old:
                backend.draining = True
            await self._drain(old)
        return True, ""

    async def _scale_to(self, count: int, desired: dict[str, Any] | None = None) -> tuple[bool, str]:
        active = self._active()
        if count > len(active):
            assert self.template is not None
            generation = int(desired["generation"]) if desired else self.applied_generation
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
                    await asyncio.sleep(TICK)
        elif count < len(active):
            # The newest go first: the oldest have warm caches.
            for backend in sorted(active, key=lambda b: b.info.get("started_at", 0))[count:]:
                backend.draining = True
                backend.info["drain_deadline"] = time.monotonic() + self.config.request_timeout_seconds + DRAIN_GRACE
        return True, ""

    async def _drain(self, backends: list[Backend]) -> None:
        for backend in backends:  # out of the rotation first, or new requests keep them busy
            backend.draining = True
        deadline = time.monotonic() + self.config.request_timeout_seconds + DRAIN_GRACE
        while any(b.inflight for b in backends) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._stop_backends(backends)

    async def _reap_drained(self) -> None:
        """Stop replicas the autoscaler drained once their last request ended."""
        done = [b for b in self.pool.backends if b.draining and "drain_deadline" in b.info
                and (b.inflight == 0 or time.monotonic() > b.info["drain_deadline"])]
        if done:
            await self._stop_backends(done)

    async def _stop_backends(self, backends: list[Backend]) -> None:
        for backend in backends:
            backend.draining = True
        replicas = [self.replicas.pop(b) for b in backends if b in self.replicas]
        for backend in backends:
            self.pool.remove(backend)
        await asyncio.gather(*(asyncio.to_thread(r.stop, STOP_TIMEOUT) for r in replicas))
        for replica in replicas:
            log.info("Stopped replica %s", replica.spec.label)

    async def _probe(self, backends: list[Backend]) -> None:
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

    async def _probe_starting(self) -> None:
        starting = [b for b in self.pool.backends if not b.ready and not b.draining]
        if starting:
            await self._probe(starting)

    async def _health(self) -> None:
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

    async def _top_up(self) -> None:
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

    def _wanted_replicas(self) -> int:
        if self.autoscaler is not None:
            return self.config.autoscale.min_replicas if self.config.autoscale else 1
        return self.config.replicas

    def _backend_failed(self, backend: Backend, reason: str) -> None:
        if backend.failures >= UNREADY_AFTER and backend.ready:
            log.warning("Replica %s taken out of the rotation: %s", backend.key, reason)
            backend.ready = False

    async def _autoscale(self, now: float) -> None:
        assert self.autoscaler is not None
        self.autoscaler.observe(now, self.pool.inflight)
        current = len(self._active())
        wanted = self.autoscaler.decide(now, current)
        if wanted != current and self.template is not None:
            log.info("Autoscaling from %s to %s replica(s) (utilisation %.0f%%, target %.0f%%)", current, wanted,
                     self.autoscaler.utilization * 100, self.config.autoscale.target_utilization * 100)
            await self._scale_to(wanted)

    # ------------------------------------------------------------------ delete / stop
    async def _delete(self, desired: dict[str, Any]) -> None:
        await self._report(desired, 0.2, "Draining and stopping the replicas")
        await self._drain(list(self.pool.backends))
        await asyncio.to_thread(self._collect_telemetry)
        with contextlib.suppress(NotFoundError):
            self.store.delete_deployment(self.workspace, self.name)
        self.deleted = True
        await self._end(desired, ok=True, message=f"Deployment '{self.name}' deleted")
        self.request_stop("deleted")

    async def _shutdown(self) -> None:
        if self.pool.backends:
            await self._drain(list(self.pool.backends))
        if self.deleted:
            return  # run() removes the folder last: its pid file says the supervisor still runs
        if self.stopping and self.stopping != "the deployment failed":
            await self._record(state=DeploymentState.UNHEALTHY, error=(
                f"The supervisor stopped ({self.stopping}); `airflow-aml deployments restore` starts it again"))
        await self._publish(force=True, running=False)

    # ------------------------------------------------------------------ workspace records
    def _current_record(self) -> Any:
        try:
            return self.store.get_deployment(self.workspace, self.name)
        except NotFoundError:
            return None

    # Store calls are synchronous (SQLAlchemy): the supervisor makes them from a thread, so that a
    # store slow to answer (a busy SQLite file) never stalls the front's requests on the loop.
    async def _record(self, **changes: Any) -> None:
        await asyncio.to_thread(self._update, **changes)

    async def _report(self, desired: dict[str, Any], fraction: float, message: str) -> None:
        await asyncio.to_thread(self._progress, desired, fraction, message)

    async def _end(self, desired: dict[str, Any], *, ok: bool, message: str = "", error: str = "") -> None:
        await asyncio.to_thread(self._finish_activity, desired, ok=ok, message=message, error=error)

    def _update(self, **changes: Any) -> None:
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            self.store.update_deployment(self.workspace, self.name, **changes)
        except ConflictError as exc:  # a newer generation was asked for meanwhile: it reports itself
            log.info("Not recording %s: %s", sorted(changes), exc)
        except NotFoundError:
            log.info("Deployment %s was deleted", self.name)
        except AmlError:
            log.exception("Could not record the state of deployment %s", self.name)

    def _progress(self, desired: dict[str, Any], fraction: float, message: str) -> None:
        activity = desired.get("activity_id")
        if activity:
            with contextlib.suppress(AmlError):
                self.store.update_activity(activity, status=ActivityStatus.RUNNING, progress=fraction, message=message)

    def _finish_activity(self, desired: dict[str, Any], *, ok: bool, message: str = "", error: str = "") -> None:
        activity = desired.get("activity_id")
        log.info("Generation %s: %s", desired.get("generation"), message or error)
        if not activity:
            return
        try:
            if ok:
                self.store.update_activity(activity, status=ActivityStatus.SUCCEEDED, progress=1.0, message=message)
            else:
                first = error.splitlines()[0] if error else "failed"
                self.store.update_activity(activity, status=ActivityStatus.FAILED, error=error, message=first[:500])
        except AmlError:
            log.exception("Could not record the end of activity %s", activity)

    async def _publish(self, *, force: bool = False, running: bool = True) -> None:
        """Record the runtime state when it changed (built on the loop that changes it)."""
        runtime = {
            "port": self.port,
            "supervisor": {"pid": os.getpid(), "host": socket.gethostname(), "running": running},
            "replicas": [
                {**{k: v for k, v in b.info.items() if k not in ("template", "last_probe", "drain_deadline")},
                 "port": b.port, "ready": b.ready, "draining": b.draining}
                for b in self.pool.backends
            ],
            "autoscale": None if self.autoscaler is None else {
                "replicas": len(self._active()), "utilization": round(self.autoscaler.utilization, 3)},
            "telemetry": self._telemetry,
        }
        if runtime != self._published or force:
            self._published = runtime
            await self._record(runtime=runtime)

    # ------------------------------------------------------------------ telemetry
    def _open_telemetry(self) -> None:
        from airflow_aml.runtime.scoring.telemetry import JsonlTelemetrySink

        if self.config.telemetry and self._sink is None:
            self._sink = JsonlTelemetrySink(self.folder / TELEMETRY_FILE)
        self.front.telemetry = self._sink if self.config.telemetry else None

    def _resume_telemetry(self, recorded: dict[str, Any]) -> None:
        """Go on from the totals the previous supervisor recorded, at the file offset it had read."""
        offset = int(recorded.get("file_offset") or 0)
        try:
            size = (self.folder / TELEMETRY_FILE).stat().st_size
        except OSError:
            size = 0
        if 0 < offset <= size:
            self._telemetry, self._telemetry_offset = dict(recorded), offset

    def _collect_telemetry(self) -> None:
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
        self._telemetry = {
            "requests": sum(totals.values()),
            "errors": sum(n for s, n in totals.items() if s.startswith("5")),
            "client_errors": sum(n for s, n in totals.items() if s.startswith("4")),
            "status_counts": dict(totals),
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "window": len(ordered)},
            "last_request_at": last,
            "samples_collected": collected,
            "dropped": int(getattr(self._sink, "dropped", 0) or 0),
            "file_offset": self._telemetry_offset,
        }

    def _write_samples(self, lines: list[str]) -> None:
        from airflow_aml.workspace import Workspace

        try:
            ws = Workspace.get(self.workspace, store_uri=os.environ[ENV_STORE_URI],
                               principal=os.environ[ENV_PRINCIPAL])
            day = time.strftime("%Y-%m-%d", time.gmtime())
            path = f"deployments/{self.name}/collected/{day}/{time.time_ns()}.jsonl"
            ws.get_default_datastore().write_bytes(path, ("\n".join(lines) + "\n").encode())
        except Exception:
            log.exception("Could not write %s collected samples to the datastore", len(lines))


# ---------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets made
    # with it, and without TCP_NODELAY every response (head and body: two writes) waits ~40 ms
    # for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _uvicorn_config(app: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        server_header=False, date_header=False,  # the replica's own pass through: no duplicates
    )


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal handlers: the supervisor owns SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    return Server


def _front_server(config: Any) -> Any:
    return _server_class()(config)


def _run_loop(main: Any) -> int:
    """uvloop when installed (uvicorn's own choice; the front costs less CPU on it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _lock(folder: Path) -> Any:
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=SUPERVISOR_MODULE, description="Supervise one deployment (internal).")
    parser.add_argument("--dir", required=True, help="the deployment's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    folder = Path(args.dir).resolve()
    lock = _lock(folder)
    if lock is None:
        log.info("Another supervisor runs %s; exiting", folder)
        return 0
    (folder / PID_FILE).write_text(str(os.getpid()))

    from airflow_aml.store import get_store

    store = get_store(os.environ[ENV_STORE_URI])
    supervisor = Supervisor(folder, store)

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, supervisor.request_stop, f"got {signal.Signals(sig).name}")
        # Blocked by the starter until the handlers exist (see start_supervisor).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return await supervisor.run()

    try:
        code = _run_loop(run())
    finally:
        lock.close()
    if supervisor.deleted:  # the very last step: the SDK's delete waits for this process to end
        shutil.rmtree(folder, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
