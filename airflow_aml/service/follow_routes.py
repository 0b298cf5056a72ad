"""Following an activity or a run's log without polling: a long-poll and server-sent-event streams.

- ``GET /activities/{id}/wait?after=<updated_at>&timeout=<s>`` answers the activity as soon as it
  changed after ``after`` (its ``updated_at`` moved) or ended, else when ``timeout`` runs out: a
  waiter makes one request per change instead of one per second (the SDK's waiters do this on a
  served workspace).
- ``GET /activities/{id}/events?timeout=<s>`` is a ``text/event-stream``: an ``activity`` event with
  the record now, one more on every change, a comment line every 15 s so that proxies keep the
  connection, and the stream ends after the event of the activity's end (or a ``timeout`` event).
  For browsers (``EventSource``) and ``curl -N``.
- ``GET /runs/{id}/logs/events?after_seq=<n>`` streams a run's log the same way: a ``log`` event
  per chunk (its ``id`` is the chunk's seq, so a reconnecting ``EventSource`` resumes after it),
  and ``end`` once the run ended and every chunk was sent.

They read through the same authorized calls as ``GET /activities/{id}``, ``GET /runs/{id}`` and
``GET /runs/{id}/logs`` (roles, run token scope, workspace), once before answering (a refusal is
an ordinary error answer) and then every ``WATCH_INTERVAL`` seconds. The
handlers are async and run each read in the thread pool: a long wait holds no worker thread.
There is no cross-process notification to listen on (the writers are other processes, SQLite
has none), so the service polls its own database; the point is that clients stop polling over
the network.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from airflow_aml.entities import ActivityRecord
from airflow_aml.exceptions import AmlError
from airflow_aml.service.access import Access
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access
from airflow_aml.service.store_routes import call_store
from airflow_aml.store.http.endpoints import BY_METHOD, to_wire

AccessDep = Annotated[Access, Depends(get_access)]

WATCH_INTERVAL = 0.25  # seconds between two reads of a watched activity
MAX_WAIT = 60.0  # a long-poll's longest wait; clients ask again
MAX_STREAM = 3600.0  # an event stream's longest life; EventSource reconnects by itself
KEEPALIVE = 15.0  # seconds between comment lines of a quiet stream


def _call(access: Access, method: str, arguments: dict[str, Any]) -> Any:
    """The store call as its own route makes it: authorized the same way."""
    return call_store(BY_METHOD[method], access, arguments)


def _read(access: Access, activity_id: str) -> ActivityRecord:
    record: ActivityRecord = _call(access, "get_activity", {"activity_id": activity_id})
    return record


def _changed(record: ActivityRecord, after: datetime | None) -> bool:
    if record.status.is_terminal or after is None:
        return True
    updated, since = record.updated_at, after
    if (updated.tzinfo is None) != (since.tzinfo is None):  # a naive time is UTC, as the store's are
        updated, since = updated.replace(tzinfo=None), since.replace(tzinfo=None)
    return updated > since


def _event(name: str, data: bytes | str, *, event_id: str | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data  # compact JSON: one line
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {text}\n\n".encode()


def _error_event(exc: AmlError) -> bytes:
    return _event("error", json.dumps({"error": {"code": type(exc).__name__, "message": str(exc)}}))


_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _stream_doc(what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": what}}


def follow_router() -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    _activity_routes(router)
    _log_routes(router)
    return router


def _activity_routes(router: APIRouter) -> None:

    @router.get("/activities/{activity_id}/wait", operation_id="wait_activity", response_model=ActivityRecord,
                tags=["activities"])
    async def wait_activity(
        request: Request, access: AccessDep, activity_id: str,
        after: Annotated[datetime | None, Query(description="The updated_at the caller last saw")] = None,
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 20.0,
    ) -> Response:
        """The activity once it changed after ``after`` or ended, else after ``timeout`` seconds."""
        record = await run_in_threadpool(_read, access, activity_id)
        deadline = time.monotonic() + timeout
        while not _changed(record, after) and time.monotonic() < deadline:
            if await request.is_disconnected():
                break
            await asyncio.sleep(min(WATCH_INTERVAL, max(0.0, deadline - time.monotonic())))
            record = await run_in_threadpool(_read, access, activity_id)
        return Response(to_wire(record), media_type="application/json")

    @router.get(
        "/activities/{activity_id}/events", operation_id="activity_events", tags=["activities"],
        response_class=StreamingResponse, responses=_stream_doc("activity events until the activity ends"),
    )
    async def activity_events(
        request: Request, access: AccessDep, activity_id: str,
        timeout: Annotated[float, Query(ge=0, le=MAX_STREAM)] = 300.0,
    ) -> StreamingResponse:
        """Server-sent events of the activity: the record now, then on every change, until it ends."""
        first = await run_in_threadpool(_read, access, activity_id)  # refusals answer before streaming

        async def events() -> AsyncIterator[bytes]:
            record, deadline = first, time.monotonic() + timeout
            last_sent: tuple[Any, ...] | None = None
            quiet_since = time.monotonic()
            while True:
                seen = (record.status, record.progress, record.message, record.error, record.updated_at)
                if seen != last_sent:
                    last_sent, quiet_since = seen, time.monotonic()
                    yield _event("activity", to_wire(record))
                if record.status.is_terminal:
                    return
                now = time.monotonic()
                if now >= deadline:
                    yield _event("timeout", json.dumps({"timeout": timeout}))
                    return
                if now - quiet_since >= KEEPALIVE:
                    quiet_since = now
                    yield b": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(min(WATCH_INTERVAL, max(0.0, deadline - now)))
                try:
                    record = await run_in_threadpool(_read, access, activity_id)
                except AmlError as exc:  # deleted with its workspace, the database gone ...
                    yield _error_event(exc)
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers=_STREAM_HEADERS)


def _log_routes(router: APIRouter) -> None:
    @router.get(
        "/runs/{run_id}/logs/events", operation_id="run_log_events", tags=["runs"],
        response_class=StreamingResponse, responses=_stream_doc("log chunks until the run ends"),
    )
    async def run_log_events(
        request: Request, access: AccessDep, run_id: str,
        after_seq: Annotated[int | None, Query(ge=0, description="The last chunk seen (else Last-Event-ID)")] = None,
        timeout: Annotated[float, Query(ge=0, le=MAX_STREAM)] = 300.0,
    ) -> StreamingResponse:
        """Server-sent events of a run's log: a ``log`` event per chunk (``id`` = its seq) after
        ``after_seq``, as they are appended, then ``end`` with the run's status once it ended."""
        if after_seq is None:  # an EventSource reconnecting says where it was
            last = request.headers.get("last-event-id", "")
            after_seq = int(last) if last.isdigit() else 0
        first = await run_in_threadpool(_call, access, "get_run", {"run_id": run_id})  # refusals first

        async def events() -> AsyncIterator[bytes]:
            run, seq = first, after_seq
            deadline = quiet_since = time.monotonic()
            deadline += timeout
            while True:
                # The status before the log: every chunk written before the run ended is in this
                # read or an earlier one, so "ended and nothing new" means the log is complete.
                try:
                    chunks = await run_in_threadpool(_call, access, "read_log", {"run_id": run_id, "after_seq": seq})
                except AmlError as exc:
                    yield _error_event(exc)
                    return
                for chunk in chunks:
                    seq = chunk.seq
                    yield _event("log", to_wire(chunk), event_id=str(chunk.seq))
                now = time.monotonic()
                if chunks:
                    quiet_since = now
                elif run.status.is_terminal:
                    yield _event("end", json.dumps({"run_id": run_id, "status": run.status.value}))
                    return
                if now >= deadline:
                    yield _event("timeout", json.dumps({"timeout": timeout}))
                    return
                if now - quiet_since >= KEEPALIVE:
                    quiet_since = now
                    yield b": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(min(WATCH_INTERVAL, max(0.0, deadline - now)))
                try:
                    run = await run_in_threadpool(_call, access, "get_run", {"run_id": run_id})
                except AmlError as exc:
                    yield _error_event(exc)
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers=_STREAM_HEADERS)
