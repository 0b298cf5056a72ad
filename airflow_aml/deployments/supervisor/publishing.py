"""What the supervisor writes to the metadata store: the deployment's state, its runtime record,
the activity's progress and end (and the one read: the deployment's record).

Store calls are synchronous (SQLAlchemy): the supervisor makes them from a thread, so that a
store slow to answer (a busy SQLite file) never stalls the front's requests on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any, Protocol

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.desired import DesiredState
from airflow_aml.deployments.front import Backend, BackendPool
from airflow_aml.entities import ActivityStatus
from airflow_aml.exceptions import AmlError, ConflictError, NotFoundError

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split


class PublishingHost(Protocol):
    """What publishing reads from the supervisor."""

    store: Any
    workspace: str
    name: str
    port: int
    pool: BackendPool
    autoscaler: Autoscaler | None
    _telemetry: dict[str, Any]
    _published: dict[str, Any] | None

    def _active(self) -> list[Backend]: ...
    async def _record(self, **changes: Any) -> None: ...
    def _update(self, **changes: Any) -> None: ...
    def _progress(self, desired: DesiredState, fraction: float, message: str) -> None: ...
    def _finish_activity(
        self, desired: DesiredState, *, ok: bool, message: str = "", error: str = ""
    ) -> None: ...


class PublishingMixin:
    """The supervisor's store calls; its state is the host's (``PublishingHost``)."""

    def _current_record(self: PublishingHost) -> Any:
        try:
            return self.store.get_deployment(self.workspace, self.name)
        except NotFoundError:
            return None

    async def _record(self: PublishingHost, **changes: Any) -> None:
        await asyncio.to_thread(self._update, **changes)

    async def _report(self: PublishingHost, desired: DesiredState, fraction: float, message: str) -> None:
        await asyncio.to_thread(self._progress, desired, fraction, message)

    async def _end(
        self: PublishingHost, desired: DesiredState, *, ok: bool, message: str = "", error: str = ""
    ) -> None:
        await asyncio.to_thread(self._finish_activity, desired, ok=ok, message=message, error=error)

    def _delete_record(self: PublishingHost) -> None:
        """Remove the deployment's record (a delete's end). Called on the loop, not in a thread: every
        replica is stopped by then, so no request waits behind it."""
        with contextlib.suppress(NotFoundError):
            self.store.delete_deployment(self.workspace, self.name)

    def _update(self: PublishingHost, **changes: Any) -> None:
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            self.store.update_deployment(self.workspace, self.name, **changes)
        except ConflictError as exc:  # a newer generation was asked for meanwhile: it reports itself
            log.info("Not recording %s: %s", sorted(changes), exc)
        except NotFoundError:
            log.info("Deployment %s was deleted", self.name)
        except AmlError:
            log.exception("Could not record the state of deployment %s", self.name)

    def _progress(self: PublishingHost, desired: DesiredState, fraction: float, message: str) -> None:
        activity = desired.activity_id
        if activity:
            with contextlib.suppress(AmlError):
                self.store.update_activity(activity, status=ActivityStatus.RUNNING, progress=fraction, message=message)

    def _finish_activity(
        self: PublishingHost, desired: DesiredState, *, ok: bool, message: str = "", error: str = ""
    ) -> None:
        activity = desired.activity_id
        log.info("Generation %s: %s", desired.generation, message or error)
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

    async def _publish(self: PublishingHost, *, force: bool = False, running: bool = True) -> None:
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
