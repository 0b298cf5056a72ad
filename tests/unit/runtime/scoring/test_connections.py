"""Header deadline and waiting-connection cap, on a real uvicorn server (both HTTP/1.1 parsers)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from airflow_aml.runtime.scoring.connections import (
    ConnectionLimits,
    GuardedH11Protocol,
    GuardedHttpProtocol,
    guard_of,
    guarded_protocol,
)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"),
                                                                    (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Served:
    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server, self.port = server, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def guard(self) -> Any:
        return guard_of(self.server.server_state)


@contextlib.contextmanager
def _serve(limits: ConnectionLimits, base: type, **config: Any) -> Iterator[_Served]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        _app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        http=guarded_protocol(limits, base), **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield _Served(server, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


PARSERS = pytest.mark.parametrize("base", [GuardedHttpProtocol, GuardedH11Protocol], ids=["httptools", "h11"])
REQUEST = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _dribble(port: int, data: bytes, interval: float, limit: float) -> tuple[float, bytes]:
    """Send ``data`` one byte per ``interval`` s; (seconds until the server answered or closed, answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = b""

    async def read() -> None:
        nonlocal answer
        answer = await reader.read(4096)

    reading = asyncio.create_task(read())
    try:
        for byte in data:
            if reading.done() or time.monotonic() - started > limit:
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
                await writer.drain()
            await asyncio.wait([reading], timeout=interval)
        await asyncio.wait_for(reading, timeout=max(0.1, limit - (time.monotonic() - started)))
        return time.monotonic() - started, answer
    finally:
        reading.cancel()
        writer.close()


@PARSERS
def test_slow_headers_get_a_408_at_the_deadline(base: type) -> None:
    with _serve(ConnectionLimits(header_timeout=1.0), base) as served:
        took, answer = asyncio.run(_dribble(served.port, REQUEST, interval=0.2, limit=10))
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive within 1 s" in answer and b"connection: close" in answer
        assert 0.9 <= took < 2.5, took
        silent, answer = asyncio.run(_dribble(served.port, b"", interval=0.2, limit=10))  # sends nothing at all
        assert answer.startswith(b"HTTP/1.1 408") and 0.9 <= silent < 2.5, (silent, answer)
        assert served.guard().timed_out == 2
        # A request that arrives at once is served as before.
        assert httpx.post(served.url + "/score", json={}, timeout=5).status_code == 200


@PARSERS
def test_keep_alive_idle_is_not_header_time_but_a_slow_next_request_is(base: type) -> None:
    with _serve(ConnectionLimits(header_timeout=1.0), base, timeout_keep_alive=30) as served:

        async def test() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            try:
                for _ in range(2):  # idle longer than the header deadline between the two: still served
                    writer.write(REQUEST)
                    await writer.drain()
                    head = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
                    assert head.startswith(b"HTTP/1.1 200"), head
                    await asyncio.sleep(1.5)
                started = time.monotonic()
                for byte in REQUEST[:20]:  # the next request's headers, slowly
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        answer = await asyncio.wait_for(reader.read(4096), 0.2)
                        break
                else:
                    answer = await asyncio.wait_for(reader.read(4096), 5)
                assert answer.startswith(b"HTTP/1.1 408"), answer
                assert time.monotonic() - started < 2.5
            finally:
                writer.close()

        asyncio.run(test())


@PARSERS
def test_waiting_connections_are_capped_oldest_first_and_requests_go_on(base: type) -> None:
    """60 half-open connections against a cap of 20: the oldest 40 are closed as the newer ones
    arrive, the rest at the header deadline; requests sent meanwhile are all served."""
    with _serve(ConnectionLimits(header_timeout=3.0, max_idle_connections=20), base) as served:

        async def test() -> None:
            opened = []
            for _ in range(60):
                reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                writer.write(b"POST /sc")  # headers begun, never finished
                await writer.drain()
                opened.append((reader, writer))
            await asyncio.sleep(0.3)
            closed = [r for r, _ in opened if r.at_eof() or await _closed(r)]
            assert len(closed) == 40, len(closed)
            assert served.guard().evicted == 40 and len(served.guard().waiting) == 20
            async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
                statuses = [(await client.post("/score", json={})).status_code for _ in range(20)]
            assert statuses == [200] * 20
            # The client's own connection waited too (between its requests) and took the place of
            # the oldest slow one; the 19 newest were kept until their deadline.
            assert served.guard().evicted == 41
            answers = await asyncio.gather(*(asyncio.wait_for(r.read(4096), 5) for r, _ in opened[40:]))
            assert [a[:12] for a in answers] == [b""] + [b"HTTP/1.1 408"] * 19
            for _, writer in opened:
                writer.close()

        asyncio.run(test())


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.05) == b""
    except TimeoutError:
        return False
