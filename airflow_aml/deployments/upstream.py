"""The front's client to its replicas: pooled keep-alive HTTP/1.1 connections, one request at a time.

Minimal on purpose: the replicas are our own scoring servers on 127.0.0.1, so the client needs
no TLS, redirects, cookies or decompression. What it needs is to be cheap: a request is one
``write`` of prebuilt bytes, the answer is parsed by httptools' C parser straight into a list
and a buffer, and the waiting is one future, with no per-request task, timer or object graph
(aiohttp's client, used before, cost the front more CPU per request than the replica spent
scoring). Deadlines are checked by one sweep every ``SWEEP`` seconds for all connections in use.

The three ways a request can fail are kept apart, because the front answers each differently:
``Refused`` (the request never reached the replica), ``Dropped`` (the connection closed before
any byte of an answer: a stale keep-alive connection, or the request killed the replica) and
``Broken`` (an answer cut short or malformed).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import httptools

SWEEP = 0.1  # seconds between deadline checks of the requests in progress
# Below uvicorn's default keep-alive timeout (5 s, the replicas'): a connection idle longer is
# closed, not reused, so a request is rarely sent on a connection the replica is closing.
IDLE_REUSE = 3.0


class Refused(OSError):
    """The connection could not be made: the request never reached the replica."""


class Dropped(ConnectionError):
    """The replica closed the connection before answering anything."""


class Broken(ConnectionError):
    """The answer was cut short or could not be parsed."""


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a replica; also httptools' callback object."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.received = False  # any byte of the current answer arrived
        self.head = False  # the current request is a HEAD: its answer has no body
        self.deadline = 0.0
        self.idle_since = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"malformed answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.received:
                self._fail(Broken("the connection closed in the middle of the answer"))
            else:
                self._fail(Dropped("the connection closed before an answer"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.head:
            self._done(keep_alive=False)  # httptools would wait for a body: this connection ends here

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # an interim answer: the real one follows
            self.headers, self.body = [], []
            return
        self._done(keep_alive=self.parser.should_keep_alive())

    # the client's side
    def send(self, data: bytes, head: bool, deadline: float) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.received, self.head, self.deadline = False, head, deadline
        self.headers, self.body = [], []
        self.transport.write(data)
        return self.waiter

    def _done(self, keep_alive: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        answer = (self.parser.get_status_code(), self.headers, b"".join(self.body))
        self.headers, self.body = [], []
        if not keep_alive:
            self.close()
        waiter.set_result(answer)

    def _fail(self, exc: BaseException) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # never reused: what it still carries is no one's answer


class Upstream:
    """Keep-alive connections per replica port, reused most-recent first. Event loop only."""

    def __init__(self) -> None:
        self.idle: dict[int, deque[_Connection]] = {}
        self.busy: set[_Connection] = set()
        self.connects = 0  # connections made (a low number under load: they are reused)
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(self, port: int, data: bytes, *, head: bool, timeout: float) -> Answer:
        """Send ``data`` (a whole request) to the replica on ``port``; its answer, or raise
        ``Refused``, ``Dropped``, ``Broken`` or ``TimeoutError`` (the connection is then closed)."""
        loop = asyncio.get_running_loop()
        connection = self._pooled(port)
        if connection is None:
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(_Connection, "127.0.0.1", port), timeout)
            except OSError as exc:
                raise Refused(f"cannot connect to 127.0.0.1:{port}: {exc}") from exc
            self.connects += 1
        waiter = connection.send(data, head, loop.time() + timeout)
        self.busy.add(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP, self._sweep)
        try:
            answer = await waiter
        finally:
            self.busy.discard(connection)
            connection.waiter = None
        if not connection.closed:
            connection.idle_since = time.monotonic()
            self.idle.setdefault(port, deque()).append(connection)
        return answer

    def _pooled(self, port: int) -> _Connection | None:
        idle = self.idle.get(port)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_REUSE:
                return connection
            connection.close()
        return None

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self.busy if c.deadline <= now]:
            connection._fail(TimeoutError())
        # Connections a replica closed (or one that is gone: its port is never asked again) are
        # dropped from the pool here, not only when their port is next asked for.
        for port, idle in list(self.idle.items()):
            kept = deque(c for c in idle if not c.closed)
            if kept:
                self.idle[port] = kept
            else:
                del self.idle[port]
        self._sweeper = loop.call_later(SWEEP, self._sweep) if self.busy else None

    def close(self) -> None:
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()
        for connection in list(self.busy):
            connection._fail(Dropped("the front is closing"))
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def request_bytes(method: bytes, target: bytes, port: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The request as sent to a replica: the client's headers (hop-by-hop ones already left out)
    and a content-length for the buffered body."""
    lines = [method, b" ", target, b" HTTP/1.1\r\nhost: 127.0.0.1:", str(port).encode(),
             b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines += (b"\r\n", body)
    return b"".join(lines)

