"""Slow clients against the front's real server (``FrontServer``, as the supervisor runs it): slow headers
and slow bodies get 408s at their deadlines, half-open connections are capped, and requests that
were admitted keep being served meanwhile. Bounded: 200 slow connections, 20 s at most each."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

import httpx
from aiohttp import web

from airflow_aml.deployments import Deployment
from airflow_aml.deployments.front import Backend, BackendPool, Front
from airflow_aml.deployments.replicas import free_port
from airflow_aml.deployments.supervisor.server import _bind, _front_server
from airflow_aml.runtime.scoring.connections import ConnectionLimits
from airflow_aml.workspace import Workspace

HEADERS = b"POST /score HTTP/1.1\r\nHost: front\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
SLOW_CONNECTIONS = 200
HOLD_SECONDS = 20.0  # the longest a slow client keeps sending


async def _replica() -> tuple[web.AppRunner, Backend]:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"ok": len(await request.read())})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, Backend(key="r", port=port, ready=True)


async def _slow(
    port: int, data: bytes, interval: float = 1.0, *, at_once: bytes = b"", hold: float = HOLD_SECONDS
) -> tuple[float, bytes]:
    """Send ``at_once``, then ``data`` a byte per ``interval`` s until the server answers or closes
    (at most ``hold`` s): (seconds it took, the answer; b"" when closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(at_once)
    started = time.monotonic()
    reading = asyncio.create_task(reader.read(4096))
    try:
        for byte in data:
            if reading.done() or time.monotonic() - started > hold:
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
                await writer.drain()
            await asyncio.wait([reading], timeout=interval)
        answer = await asyncio.wait_for(reading, timeout=max(0.1, hold - (time.monotonic() - started)))
    except ConnectionResetError:
        # Closed without an answer too: a byte we sent as the server closed makes its kernel
        # answer with a reset, which can overtake the FIN we would otherwise read as b"".
        answer = b""
    except (TimeoutError, ConnectionError):
        answer = b"(no answer)"
    finally:
        reading.cancel()
        writer.close()
    return time.monotonic() - started, answer


def test_slowloris_is_timed_out_and_capped_while_admitted_requests_are_served() -> None:
    limits = ConnectionLimits(header_timeout=2.0, max_idle_connections=100)

    async def test() -> dict[str, Any]:
        runner, backend = await _replica()
        pool = BackendPool()
        pool.add(backend)
        front = Front(pool, request_timeout=5, max_request_bytes=1000, body_timeout=3.0)
        port = free_port()
        server = _front_server(front, limits)
        await server.start(_bind(port))
        try:
            started = time.monotonic()
            slow_headers = [asyncio.create_task(_slow(port, HEADERS)) for _ in range(SLOW_CONNECTIONS)]
            await asyncio.sleep(0.5)  # all of them connected and dribbling
            slow_body = asyncio.create_task(_slow(port, b'{"data": [[1, 2, 3, 4]]}' + b" " * 16, at_once=HEADERS))
            latencies: list[float] = []
            statuses: list[int] = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                while time.monotonic() - started < 5.0 and len(statuses) < 2000:  # bounded in time and count
                    t0 = time.perf_counter()
                    response = await client.post("/score", json={"data": [[1, 2, 3, 4]]})
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses.append(response.status_code)
            headers_results = await asyncio.gather(*slow_headers)
            body_took, body_answer = await slow_body
            guard = server.guard
            return {"headers": headers_results, "body": (body_took, body_answer), "statuses": statuses,
                    "latencies": latencies, "evicted": guard.evicted, "timed_out": guard.timed_out,
                    "open_after": len(server.connections)}
        finally:
            await asyncio.wait_for(server.stop(), 15)
            await runner.cleanup()

    result = asyncio.run(test())
    timed_out = [took for took, answer in result["headers"] if answer.startswith(b"HTTP/1.1 408")]
    evicted = [took for took, answer in result["headers"] if answer == b""]
    latencies = sorted(result["latencies"])
    print(f"\nslow headers: {len(timed_out)} x 408 after {min(timed_out):.2f}-{max(timed_out):.2f} s, "
          f"{len(evicted)} closed by the cap after {max(evicted):.2f} s at most; "
          f"slow body: {result['body'][1][:12]!r} after {result['body'][0]:.2f} s; admitted: "
          f"{len(latencies)} requests, p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms, max {latencies[-1]:.1f} ms")
    # Nobody held a connection: each slow one ended at the header deadline, or at once by the cap.
    assert len(timed_out) + len(evicted) == SLOW_CONNECTIONS, [a[:20] for _, a in result["headers"]]
    assert len(evicted) >= SLOW_CONNECTIONS - limits.max_idle_connections
    assert max(evicted) < 1.5 and min(timed_out) >= 1.9 and max(timed_out) < 3.5
    assert result["evicted"] == len(evicted) and result["timed_out"] == len(timed_out)
    assert result["body"][1].startswith(b"HTTP/1.1 408") and b"body did not arrive within 3 s" in result["body"][1]
    assert 2.9 <= result["body"][0] < 4.5
    # Admitted requests were served all along.
    assert set(result["statuses"]) == {200} and len(result["statuses"]) >= 50
    assert latencies[int(len(latencies) * 0.99)] < 250


def test_a_deployment_with_default_settings_times_out_slow_clients(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    """The issue's scenario on a real local deployment, default settings: headers at 1 byte/s
    through the front and straight at the replica, a body at 1 byte/s through the front, and 200
    half-open connections held for up to 20 s while a client keeps scoring. Before: no answer to
    any of them (the body after 45 s neither), and the 200 stayed open."""
    cleanup.append("slowloris")
    service = Deployment.create(deploy_ws, "slowloris", images["v1"])
    config = service.config
    front_port = int((service.scoring_uri or "").rsplit(":", 1)[1].split("/")[0])
    (replica,) = service.replicas
    key = service.get_keys()[0]
    auth = f"Authorization: Bearer {key}\r\n".encode()
    headers = HEADERS.replace(b"Host: front\r\n", b"Host: front\r\n" + auth)

    async def test() -> dict[str, Any]:
        started = time.monotonic()
        crowd = [asyncio.create_task(_slow(front_port, headers)) for _ in range(SLOW_CONNECTIONS)]
        await asyncio.sleep(1.0)
        front_headers = asyncio.create_task(_slow(front_port, headers))
        replica_headers = asyncio.create_task(_slow(int(replica["port"]), headers))
        front_body = asyncio.create_task(_slow(front_port, b'{"echo": 1}' + b" " * 29, at_once=headers,
                                                hold=config.body_timeout_seconds + 5))
        latencies: list[float] = []
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
            while time.monotonic() - started < 12.0 and len(statuses) < 3000:  # bounded in time and count
                t0 = time.perf_counter()
                response = await client.post(service.scoring_uri or "", json={"echo": 1})
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses.append(response.status_code)
                await asyncio.sleep(0.01)
        return {"crowd": await asyncio.gather(*crowd), "front_headers": await front_headers,
                "replica_headers": await replica_headers, "front_body": await front_body,
                "statuses": statuses, "latencies": sorted(latencies)}

    result = asyncio.run(test())
    crowd = result["crowd"]
    timed_out = [took for took, answer in crowd if answer.startswith(b"HTTP/1.1 408")]
    evicted = [took for took, answer in crowd if answer == b""]
    latencies = result["latencies"]
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"\ndefaults {config.header_timeout_seconds:g}/{config.body_timeout_seconds:g} s, cap "
          f"{config.max_idle_connections}: crowd {len(timed_out)} x 408 by {max(timed_out):.2f} s, {len(evicted)} "
          f"closed by the cap; front headers {result['front_headers'][0]:.2f} s, replica headers "
          f"{result['replica_headers'][0]:.2f} s, front body {result['front_body'][0]:.2f} s; admitted "
          f"{len(latencies)} requests, p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms")
    assert len(timed_out) + len(evicted) == SLOW_CONNECTIONS, [a[:20] for _, a in crowd]
    assert len(evicted) >= SLOW_CONNECTIONS - config.max_idle_connections
    assert max(timed_out) < config.header_timeout_seconds + 2
    for name, limit in (("front_headers", config.header_timeout_seconds), ("replica_headers", 10.0),
                        ("front_body", config.body_timeout_seconds)):
        took, answer = result[name]
        assert answer.startswith(b"HTTP/1.1 408"), (name, answer)
        assert limit - 0.5 <= took < limit + 2.5, (name, took)
    assert set(result["statuses"]) == {200} and len(result["statuses"]) >= 100
    assert p99 < 500
