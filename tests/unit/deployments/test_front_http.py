"""The front's HTTP/1.1 server on raw sockets: pipelining, chunked bodies, keep-alive, HTTP/1.0,
100-continue, limits and graceful shutdown, with small aiohttp servers as replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from airflow_aml.deployments.front import Backend, BackendPool, Front
from airflow_aml.deployments.front_http import FrontServer
from airflow_aml.deployments.replicas import free_port
from airflow_aml.deployments.supervisor.server import _bind


@asynccontextmanager
async def _served(delay: float = 0.0, **front_options: Any) -> AsyncIterator[tuple[FrontServer, int]]:
    """A front (its server on a free port) before one replica that echoes, after ``delay`` s, the
    request's body and headers."""

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response({"body": (await request.read()).decode(), "path": request.path_qs,
                                  "headers": {k.lower(): v for k, v in request.headers.items()}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    replica_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", replica_port).start()
    pool = BackendPool()
    pool.add(Backend(key="r", port=replica_port, ready=True))
    keep_alive = front_options.pop("keep_alive", 30.0)
    options = {"request_timeout": 5, "max_request_bytes": 1000, **front_options}
    server = FrontServer(Front(pool, **options), keep_alive_timeout=keep_alive)
    port = free_port()
    await server.start(_bind(port))
    try:
        yield server, port
    finally:
        await server.stop()
        await runner.cleanup()


async def _answers(reader: asyncio.StreamReader, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``count`` answers (status line, headers, body) read off one connection, in order."""
    answers = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, *lines = head[:-4].split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        body = await reader.readexactly(int(headers[b"content-length"]))
        answers.append((status, headers, body))
    return answers


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_pipelined_requests_are_answered_in_order_on_one_kept_alive_connection() -> None:
    async def test() -> None:
        async with _served() as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(
                f"POST /score?n={n} HTTP/1.1\r\nHost: f\r\nContent-Length: {len(str(n))}\r\n\r\n{n}".encode()
                for n in range(20)))  # beyond the pipeline's pause mark
            answers = await _answers(reader, 20)
            writer.write(b"GET /again HTTP/1.1\r\nHost: f\r\n\r\n")
            (again,) = await _answers(reader, 1)
            writer.close()
            assert [json.loads(body)["body"] for _, _, body in answers] == [str(n) for n in range(20)]
            assert all(status == b"HTTP/1.1 200 OK" for status, _, _ in answers)
            assert json.loads(again[2])["path"] == "/again"
            assert server.front.upstream.connects == 1  # one replica connection, reused for all

    _run(test)


def test_a_chunked_body_is_forwarded_whole_with_a_length_and_no_hop_headers() -> None:
    async def test() -> None:
        async with _served() as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive"
                         b"\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Custom: 1\r\n\r\n")
            writer.write(b"5\r\n{\"a\":\r\n")
            await asyncio.sleep(0.05)
            writer.write(b"3\r\n 1}\r\n0\r\n\r\n")
            ((status, headers, body),) = await _answers(reader, 1)
            writer.close()
            doc = json.loads(body)
            assert status == b"HTTP/1.1 200 OK" and doc["body"] == '{"a": 1}'
            assert doc["headers"]["content-length"] == "8" and doc["headers"]["x-custom"] == "1"
            assert not {"transfer-encoding", "keep-alive", "te"} & set(doc["headers"])
            assert b"transfer-encoding" not in headers and b"connection" not in headers

    _run(test)


def test_http10_closes_unless_kept_alive_and_expect_100_continue_is_answered() -> None:
    async def test() -> None:
        async with _served() as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}")
            ((_, kept, _),) = await _answers(reader, 1)
            writer.write(b"GET /x HTTP/1.0\r\n\r\n")
            ((_, closed, _),) = await _answers(reader, 1)
            assert await reader.read() == b""  # closed after the answer
            writer.close()
            assert kept[b"connection"] == b"keep-alive" and closed[b"connection"] == b"close"

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{}")
            ((status, _, body),) = await _answers(reader, 1)
            writer.close()
            assert status == b"HTTP/1.1 200 OK" and "expect" not in json.loads(body)["headers"]

    _run(test)


def test_too_large_bodies_are_413_at_once_by_length_or_by_chunks() -> None:
    async def test() -> None:
        async with _served(max_request_bytes=10) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100)
            ((status, headers, body),) = await _answers(reader, 1)
            writer.close()
            assert status.startswith(b"HTTP/1.1 413") and headers[b"connection"] == b"close"
            assert json.loads(body)["error"] == "PayloadTooLarge"

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nxxxxxx\r\n"
                         b"6\r\nxxxxxx\r\n")
            ((status, _, _),) = await _answers(reader, 1)
            writer.close()
            assert status.startswith(b"HTTP/1.1 413") and server.front.upstream.connects == 0

    _run(test)


def test_a_malformed_request_is_400_and_a_slow_body_408() -> None:
    async def test() -> None:
        async with _served(body_timeout=0.3) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            ((status, _, _),) = await _answers(reader, 1)
            writer.close()
            assert status.startswith(b"HTTP/1.1 400")

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nContent-Length: 5\r\n\r\n{")
            ((status, headers, body),) = await _answers(reader, 1)
            writer.close()
            assert status.startswith(b"HTTP/1.1 408") and headers[b"connection"] == b"close"
            assert "body did not arrive within 0.3 s" in json.loads(body)["message"]

    _run(test)


def test_idle_keep_alive_connections_are_closed() -> None:
    async def test() -> None:
        async with _served(keep_alive=0.3) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: f\r\n\r\n")
            await _answers(reader, 1)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert not server.connections

    _run(test)


def test_shutdown_answers_requests_in_progress_and_closes_idle_connections() -> None:
    async def test() -> None:
        async with _served(delay=0.5) as (server, port):
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\n\r\n{}")
            await asyncio.sleep(0.1)
            stopping = asyncio.create_task(server.stop())
            ((status, headers, _),) = await _answers(reader, 1)
            await stopping
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            writer.close()
            idle_writer.close()
            assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
            refused = False
            try:
                await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                refused = True
            assert refused

    _run(test)
