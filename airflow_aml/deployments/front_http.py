"""The front's HTTP/1.1 server: an asyncio protocol on httptools' C parser, no ASGI in between.

The front does one thing per request (buffer it, hand it to ``Front.handle``, write the answer),
so a general server's machinery (uvicorn's ASGI cycle: scope dicts, receive/send coroutines and
messages per request, and a task per message) was most of its cost. Here a request is parsed by
httptools into a few lists, handed to ``Front.handle`` by one task per connection (the worker,
which answers pipelined requests one after the other, in order), and answered with one write.

What uvicorn and ``runtime.scoring.connections`` gave the front before is kept:

- keep-alive (idle connections closed after ``keep_alive_timeout``), HTTP/1.0 and pipelining
  (answered in order; reading pauses beyond ``_PIPELINE_HIGH`` queued requests, and while the
  client does not read its answers);
- chunked request bodies (httptools decodes them) and ``Expect: 100-continue``;
- the header deadline (``408``) and the cap on waiting connections, with the same
  ``ConnectionGuard`` (it closes the oldest waiter through ``_aml_close``); the body deadline
  (``408``, ``Front.body_timeout``) and the body size limit (``413``, ``Front.max_request_bytes``),
  both answered at once and the connection then closed (the body's rest is not read);
- graceful shutdown: no new connections, idle ones closed, requests in progress answered (for
  ``shutdown_timeout`` seconds at most) with ``connection: close``.

Deadlines are checked by one sweep every ``_SWEEP`` seconds, not a timer per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from http import HTTPStatus

import httptools

from airflow_aml.deployments.front import Front
from airflow_aml.deployments.upstream import Answer
from airflow_aml.runtime.scoring.connections import ConnectionGuard, ConnectionLimits, _timeout_response

log = logging.getLogger(__name__)

_SWEEP = 0.1  # seconds between deadline checks
_LINGER = 2.0  # seconds a connection answered with an error stays open for the client to read it
_PIPELINE_HIGH, _PIPELINE_LOW = 16, 4  # queued requests at which reading pauses / resumes
_NEVER = float("inf")
_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()


def _error(status: int, error: str, message: str) -> Answer:
    return status, [(b"content-type", b"application/json")], json.dumps(
        {"error": error, "message": message}).encode()


class _Request:
    __slots__ = ("body", "error", "headers", "http10", "keep_alive", "method", "started", "target")

    def __init__(self) -> None:
        self.method = b"GET"
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.keep_alive = True
        self.http10 = False
        self.started = 0.0
        self.error: Answer | None = None  # answered as is, and the connection closed after it


class _Connection(asyncio.Protocol):
    """One client connection; also httptools' callback object."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.front = server.front
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Request] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.request: _Request | None = None  # being parsed
        self.size = 0
        self.deadline = _NEVER
        self.deadline_kind = ""  # "header", "body", "idle" or "linger"
        self.reading = True  # False once an error answer ends the connection: the rest is ignored
        self.read_paused = False
        self.write_ready: asyncio.Future[None] | None = None  # set while the client reads nothing
        self.eof = False

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.server.guard.wait(self)
        self._deadline("header", self.server.limits.header_timeout)  # one that sends nothing is half-open too

    def data_received(self, data: bytes) -> None:
        if not self.reading:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # the request is in the queue; no other protocol is spoken
            self._stop_reading(None)
        except httptools.HttpParserError as exc:
            self._stop_reading(_error(400, "BadRequest", f"Malformed request: {exc}"))

    def eof_received(self) -> bool:
        self.eof = True
        return self.worker is not None  # keep the connection to answer what was asked

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.guard.admit(self)
        self.reading = False
        self.queue.clear()
        if self.write_ready is not None and not self.write_ready.done():
            self.write_ready.set_result(None)

    def pause_writing(self) -> None:
        self.write_ready = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.write_ready is not None and not self.write_ready.done():
            self.write_ready.set_result(None)
        self.write_ready = None

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        if not self.reading:  # a pipelined request after one that ended the connection
            return
        self.request = _Request()
        self.request.started = time.perf_counter()
        self.size = 0
        if self.deadline_kind != "header":  # the first byte of a keep-alive connection's next request
            self._deadline("header", self.server.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        if self.request is not None:
            self.request.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.request is not None:
            self.request.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        request = self.request
        if request is None:
            return
        self.server.guard.admit(self)
        parser = self.parser
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        request.http10 = parser.get_http_version() == "1.0"
        self._deadline("body", self.front.body_timeout)
        limit = self.front.max_request_bytes
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._too_large()
                return
            if name == b"expect" and value.lower() == b"100-continue" and self.worker is None and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.request is None or not self.reading:
            return
        self.size += len(body)
        if self.size > self.front.max_request_bytes:
            self._too_large()
            return
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        if request is None or not self.reading:
            return
        self.deadline, self.deadline_kind = _NEVER, ""
        self._enqueue(request)

    # ------------------------------------------------------------------ requests and answers
    def _enqueue(self, request: _Request) -> None:
        self.queue.append(request)
        if len(self.queue) >= _PIPELINE_HIGH and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = self.loop.create_task(self._work())

    async def _work(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self.queue:
                request = self.queue.popleft()
                if self.read_paused and len(self.queue) <= _PIPELINE_LOW and self.reading:
                    self.read_paused = False
                    transport.resume_reading()
                if request.error is not None:
                    self._write(request, request.error, close=True)
                    return
                try:
                    answer = await self.front.handle(request.method, request.target, request.headers,
                                                     b"".join(request.body), request.started)
                except Exception:  # a bug: the client gets an answer, the log the traceback
                    log.exception("The front failed on %s %r", request.method, request.target)
                    answer = _error(500, "InternalError", "The deployment's front failed on this request")
                if transport.is_closing():
                    return
                close = not request.keep_alive or self.server.stopping or (not self.reading and not self.queue)
                self._write(request, answer, close=close)
                if close:
                    return
                if self.write_ready is not None:  # the client reads nothing: take no more of its requests
                    await self.write_ready
        finally:
            self.worker = None
        if transport.is_closing():
            return
        if self.eof or self.server.stopping:
            transport.close()
        elif self.request is None:  # idle again (the next request's headers may already be arriving)
            self.server.guard.wait(self)
            self._deadline("idle", self.server.keep_alive_timeout)

    def _write(self, request: _Request, answer: Answer, *, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        status, headers, payload = answer
        head = request.method == b"HEAD"
        lines = [_status_line(status)]
        length = False
        for name, value in headers:
            if head and name == b"content-length":
                length = True
            lines += (name, b": ", value, b"\r\n")
        if not length:
            lines += (b"content-length: ", str(len(payload)).encode(), b"\r\n")
        if close:
            lines.append(b"connection: close\r\n")
        elif request.http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if not head:
            lines.append(payload)
        transport.write(b"".join(lines))
        if close:
            self.reading = False
            if request.error is not None and transport.can_write_eof():
                # The body's rest may still be on its way: closing now could reset the connection
                # and the answer with it. Say "no more" and give the client time to read.
                transport.write_eof()
                self._deadline("linger", _LINGER)
            else:
                transport.close()

    def _too_large(self) -> None:
        self._stop_reading(_error(413, "PayloadTooLarge",
                                  f"The request body is larger than {self.front.max_request_bytes} bytes"))

    def _stop_reading(self, answer: Answer | None) -> None:
        """No more requests on this connection; ``answer`` (if any) after those already queued."""
        self.reading = False
        self.request = None
        self.deadline, self.deadline_kind = _NEVER, ""
        if answer is not None:
            request = _Request()
            request.error = answer
            self._enqueue(request)
        elif self.worker is None and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ deadlines
    def _deadline(self, kind: str, seconds: float) -> None:
        self.deadline, self.deadline_kind = self.loop.time() + seconds, kind

    def expired(self) -> None:
        kind = self.deadline_kind
        self.deadline, self.deadline_kind = _NEVER, ""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if kind == "header" and self.worker is None:
            self.server.guard.timed_out += 1
            self.server.guard.admit(self)
            self.reading = False
            transport.write(_timeout_response(self.server.limits.header_timeout))
            transport.close()
        elif kind == "header":  # an earlier pipelined request is still being answered: after it
            self.server.guard.timed_out += 1
            self._stop_reading(_error(408, "RequestTimeout", "The request headers did not arrive within "
                                      f"{self.server.limits.header_timeout:g} s"))
        elif kind == "body":
            self._stop_reading(_error(408, "RequestTimeout",
                                      f"The request body did not arrive within {self.front.body_timeout:g} s"))
        else:  # "idle" (keep-alive timeout) or "linger"
            transport.close()

    def _aml_close(self) -> None:
        """Evicted by the guard to stay under the cap: closed without an answer (nothing was asked)."""
        self.reading = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class FrontServer:
    """The listening socket's server. ``limits`` is shared with the supervisor, which changes it in
    place when an update changes the deployment's settings."""

    def __init__(self, front: Front, limits: ConnectionLimits | None = None, *,
                 keep_alive_timeout: float = 30.0, shutdown_timeout: float = 5.0) -> None:
        self.front = front
        self.limits = limits or ConnectionLimits()
        self.guard = ConnectionGuard(self.limits)
        self.keep_alive_timeout = keep_alive_timeout
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the serving loop's, at start()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def started(self) -> bool:
        return self._server is not None

    async def start(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        await self.front.start()
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=1024)
        self._sweeper = self.loop.call_later(_SWEEP, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in [c for c in self.connections if c.deadline <= now]:
            connection.expired()
        self._sweeper = self.loop.call_later(_SWEEP, self._sweep)

    async def stop(self) -> None:
        """Stop listening, close idle connections, let requests in progress be answered."""
        self.stopping = True
        if self._server is None:  # never started
            await self.front.close()
            return
        self._server.close()
        ends = self.loop.time() + self.shutdown_timeout
        while True:
            for connection in list(self.connections):
                if connection.worker is None and connection.transport is not None:
                    connection.transport.close()
            if not self.connections or self.loop.time() >= ends:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.front.close()

