"""The load-balancing front, served by its real HTTP server in one event loop with small aiohttp
servers as replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiohttp import web

from airflow_aml.deployments.front import Backend, BackendPool, Front
from airflow_aml.deployments.front_http import FrontServer
from airflow_aml.deployments.replicas import free_port
from airflow_aml.deployments.supervisor.server import _bind


class Recorder:
    """A TelemetrySink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def record(self, *args: Any) -> None:
        self.records.append(args)


async def _replica(name: str, delay: float = 0.0) -> tuple[web.AppRunner, Backend]:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        body = await request.read()
        return web.json_response(
            {"replica": name, "path": request.path, "query": request.query_string, "body": body.decode(),
             "auth": request.headers.get("Authorization")},
            headers={"x-request-id": "rid-" + name},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, Backend(key=name, port=port, ready=True)


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


class _Served(httpx.AsyncClient):
    """A client of the front's server, which it stops on leaving."""

    server: FrontServer

    async def __aexit__(self, *exc: Any) -> None:
        await super().__aexit__(*exc)
        await self.server.stop()


async def _client(front: Front) -> httpx.AsyncClient:
    port = free_port()
    server = FrontServer(front)
    await server.start(_bind(port))
    client = _Served(base_url=f"http://127.0.0.1:{port}", timeout=10)
    client.server = server
    return client


def test_forwards_method_path_query_body_and_headers() -> None:
    async def test() -> None:
        runner, backend = await _replica("a")
        pool = BackendPool()
        pool.add(backend)
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            response = await client.post("/score?x=1", content=b'{"data": 1}',
                                         headers={"Authorization": "Bearer k", "Connection": "keep-alive"})
        await front.close()
        await runner.cleanup()
        doc = response.json()
        assert response.status_code == 200 and response.headers["x-request-id"] == "rid-a"
        assert doc == {"replica": "a", "path": "/score", "query": "x=1", "body": '{"data": 1}', "auth": "Bearer k"}
        assert backend.served == 1 and backend.inflight == 0 and pool.inflight == 0

    _run(test)


def test_least_busy_replica_takes_the_request() -> None:
    async def test() -> None:
        runners, backends = zip(*[await _replica(n, delay=0.2) for n in ("a", "b", "c")], strict=True)
        pool = BackendPool()
        for backend in backends:
            pool.add(backend)
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            answers = await asyncio.gather(*(client.post("/score", content=b"{}") for _ in range(6)))
        await front.close()
        for runner in runners:
            await runner.cleanup()
        served = sorted(a.json()["replica"] for a in answers)
        assert served == ["a", "a", "b", "b", "c", "c"]  # concurrent requests spread evenly

    _run(test)


def test_draining_and_unready_replicas_get_nothing() -> None:
    async def test() -> None:
        (ra, a), (rb, b), (rc, c) = [await _replica(n) for n in ("a", "b", "c")]
        pool = BackendPool()
        for backend in (a, b, c):
            pool.add(backend)
        a.draining, b.ready = True, False
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            answers = [await client.post("/score", content=b"{}") for _ in range(5)]
        await front.close()
        for runner in (ra, rb, rc):
            await runner.cleanup()
        assert {r.json()["replica"] for r in answers} == {"c"}

    _run(test)


def test_a_dead_replica_is_skipped_and_reported() -> None:
    async def test() -> None:
        runner, alive = await _replica("alive")
        dead = Backend(key="dead", port=free_port(), ready=True)  # nothing listens there
        pool = BackendPool()
        pool.add(dead)
        pool.add(alive)
        failures: list[str] = []
        front = Front(pool, request_timeout=5, max_request_bytes=1000,
                      on_backend_failure=lambda backend, reason: failures.append(backend.key))
        async with await _client(front) as client:
            answers = [await client.post("/score", content=b"{}") for _ in range(4)]
        await front.close()
        await runner.cleanup()
        assert [a.status_code for a in answers] == [200] * 4
        assert {a.json()["replica"] for a in answers} == {"alive"}
        assert failures and set(failures) == {"dead"}

    _run(test)


def test_no_replica_answers_503_with_retry_after() -> None:
    async def test() -> None:
        pool = BackendPool()
        pool.add(Backend(key="dead", port=free_port(), ready=True))
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            refused = await client.post("/score", content=b"{}")
            pool.backends[0].ready = False
            empty = await client.post("/score", content=b"{}")
        await front.close()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "replica dead: Refused" in refused.json()["message"]
        assert empty.status_code == 503 and "no replica is ready" in empty.json()["message"]

    _run(test)


def test_oversized_body_is_413_without_touching_a_replica() -> None:
    async def test() -> None:
        runner, backend = await _replica("a")
        pool = BackendPool()
        pool.add(backend)
        front = Front(pool, request_timeout=5, max_request_bytes=10)
        async with await _client(front) as client:
            response = await client.post("/score", content=b"x" * 11)
        await front.close()
        await runner.cleanup()
        assert response.status_code == 413 and response.json()["error"] == "PayloadTooLarge"
        assert backend.served == 0

    _run(test)


def test_slow_replica_is_a_504() -> None:
    async def test() -> None:
        runner, backend = await _replica("slow", delay=3)
        pool = BackendPool()
        pool.add(backend)
        front = Front(pool, request_timeout=0.5, max_request_bytes=100)
        front.timeout_margin = 0.0
        async with await _client(front) as client:
            response = await client.post("/score", content=b"{}")
        await front.close()
        await runner.cleanup()
        assert response.status_code == 504 and "did not answer" in response.json()["message"]

    _run(test)


def test_telemetry_for_score_requests_with_sampling() -> None:
    async def test() -> None:
        runner, backend = await _replica("a")
        pool = BackendPool()
        pool.add(backend)
        sink = Recorder()
        front = Front(pool, request_timeout=5, max_request_bytes=1000, telemetry=sink, sample_rate=1.0)
        async with await _client(front) as client:
            await client.post("/score", content=b'{"data": [1]}')
            await client.get("/health")
        await front.close()
        await runner.cleanup()
        ((request_id, status, latency, sample_in, sample_out),) = sink.records  # /health is not recorded
        assert request_id == "rid-a" and status == 200 and latency > 0
        assert sample_in == '{"data": [1]}' and json.loads(sample_out)["replica"] == "a"

    _run(test)


def test_a_request_that_kills_replicas_is_sent_at_most_twice() -> None:
    """A replica closing the connection without answering may have been killed by the request (an
    input that runs it out of memory): one resend covers a stale keep-alive connection, no more."""

    async def test() -> None:
        deliveries: list[int] = []

        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            deliveries.append(1)
            writer.close()

        servers, pool = [], BackendPool()
        for name in ("a", "b", "c"):
            port = free_port()
            servers.append(await asyncio.start_server(drop, "127.0.0.1", port))
            pool.add(Backend(key=name, port=port, ready=True))
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            response = await client.post("/score", content=b"{}")
        await front.close()
        for server in servers:
            server.close()
        assert response.status_code == 502 and "closed the connection without an answer" in response.json()["message"]
        assert len(deliveries) == 2

    _run(test)


def test_a_request_that_kills_the_only_replica_is_a_502() -> None:
    """A run() that calls os._exit: the connection closes without an answer, the resend is refused
    (the process is gone). That request killed its replica: 502, as for a pool, not 503."""

    async def test() -> None:
        port = free_port()
        deliveries: list[int] = []
        server: asyncio.Server | None = None

        async def die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            deliveries.append(1)
            assert server is not None
            server.close()  # the process is gone: its port refuses from now on
            writer.transport.abort()

        server = await asyncio.start_server(die, "127.0.0.1", port)
        pool = BackendPool()
        pool.add(Backend(key="only", port=port, ready=True))
        front = Front(pool, request_timeout=5, max_request_bytes=1000)
        async with await _client(front) as client:
            response = await client.post("/score", content=b"{}")
        await front.close()
        assert response.status_code == 502, response.text
        assert "closed the connection without an answer" in response.json()["message"]
        assert "retry-after" not in response.headers and deliveries == [1]

    _run(test)
