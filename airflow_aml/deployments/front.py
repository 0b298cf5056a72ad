"""The load-balancing front of a deployment: the scoring URI's port, before the replicas.

``Front.handle`` forwards each HTTP request to the ready replica with the fewest requests in
progress, over pooled keep-alive connections (``upstream``: a minimal HTTP/1.1 client on
httptools' C parser). It is served by ``front_http.FrontServer``, an asyncio protocol on the
same parser, in the supervisor's uvloop loop. Both replaced an ASGI app on uvicorn with
aiohttp's client, whose machinery per request cost the front ~320 us of CPU per request, almost
as much as the replica itself; now ~80 us (``benchmarks/serving_wrk.py`` prints it; README).

Routing is per request, not per connection, which is what makes a rolling update lossless: a
replica being replaced is first taken out of the rotation (``drain``), the supervisor waits until
its in-flight count is zero, and only then stops it. A connection refused or dropped before a
response (a replica that just died) is retried on another replica: scoring is a pure function
of the request, so a retry cannot do harm.

The front records one telemetry line per ``/score`` request (status, latency as the client saw
it, and for a sampled share the input and output) and tracks the load the autoscaler reads.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from airflow_aml.deployments.upstream import Answer, Broken, Dropped, Refused, Upstream, request_bytes
from airflow_aml.runtime.scoring.telemetry import TelemetrySink

log = logging.getLogger(__name__)

# Headers that describe one hop, not the message (RFC 9110 7.6.1): never forwarded.
_HOP_HEADERS = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"host", b"content-length",
    b"expect",  # the front reads the whole body (answering 100-continue itself) before forwarding
})
_RESENDS = 1  # times a request is sent again after a replica closed the connection without answering
_SAMPLE_LIMIT = 64 * 1024  # characters of an input or output kept in a telemetry sample


@dataclass(eq=False)
class Backend:
    """One replica as the front sees it."""

    key: str  # the replica's label, e.g. "iris/g2-r0"
    port: int
    ready: bool = False  # answers /ready (set by the supervisor's health checks)
    draining: bool = False  # out of the rotation, waiting for in-flight requests to end
    inflight: int = 0
    served: int = 0
    failures: int = 0  # consecutive connection failures seen by the front
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def routable(self) -> bool:
        return self.ready and not self.draining


class BackendPool:
    """The replicas and their load. Used from the event loop only: no locks needed."""

    def __init__(self) -> None:
        self.backends: list[Backend] = []
        self._turn = itertools.count()
        self.inflight = 0  # all replicas

    def add(self, backend: Backend) -> None:
        self.backends.append(backend)

    def remove(self, backend: Backend) -> None:
        if backend in self.backends:
            self.backends.remove(backend)

    def routable(self) -> list[Backend]:
        return [b for b in self.backends if b.routable]

    def pick(self, exclude: set[Backend]) -> Backend | None:
        """The routable replica with the fewest requests in progress (ties taken in turn)."""
        candidates = [b for b in self.backends if b.routable and b not in exclude]
        if not candidates:
            return None
        low = min(b.inflight for b in candidates)
        tied = [b for b in candidates if b.inflight == low]
        return tied[next(self._turn) % len(tied)]


class Front:
    """What the front does with one request: pick a replica, forward, answer, record.

    ``handle`` is called by the front's HTTP server (``front_http``) with a whole request, its body
    already read; ``start``/``close`` open and close, in the serving loop, the replica connections
    and the aiohttp session of the health probes (not on the request path).
    """

    def __init__(
        self, pool: BackendPool, *, request_timeout: float, max_request_bytes: int,
        body_timeout: float = 30.0, telemetry: TelemetrySink | None = None, sample_rate: float = 0.0,
        on_backend_failure: Callable[[Backend, str], None] | None = None,
    ) -> None:
        self.pool = pool
        self.request_timeout = request_timeout
        self.max_request_bytes = max_request_bytes
        # The whole body must arrive within this many seconds of the headers: the front buffers it
        # before forwarding, so without a deadline a client sending a byte a second held a
        # connection for as long as it liked (the headers' deadline is the server's).
        self.body_timeout = body_timeout
        self.telemetry = telemetry
        self.sample_rate = sample_rate
        self.on_backend_failure = on_backend_failure
        self.session: aiohttp.ClientSession | None = None  # the health probes' (supervisor)
        self.upstream = Upstream()
        self.requests = 0
        # Beyond the replicas' own request timeout (they answer 504 themselves): only a replica that
        # hangs altogether meets the front's.
        self.timeout_margin = 10.0

    async def start(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                                 timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        self.upstream.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def handle(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                     started: float) -> Answer:
        """The answer to one request (``headers``: lower-case names, as received); ``started``:
        ``time.perf_counter()`` when its first byte arrived, for the telemetry latency."""
        self.requests += 1
        forwarded = [(k, v) for k, v in headers if k not in _HOP_HEADERS]
        status, out, payload = await self._forward(method, target, forwarded, body)
        if self.telemetry is not None and target.split(b"?", 1)[0] == b"/score":
            self._record(status, out, body, payload, (time.perf_counter() - started) * 1000)
        return status, out, payload

    async def _forward(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                       body: bytes) -> Answer:
        refused: set[Backend] = set()
        dropped = 0
        last_error = "no replica is ready"
        head = method == b"HEAD"
        timeout = self.request_timeout + self.timeout_margin
        while True:
            backend = self.pool.pick(refused)
            if backend is None and dropped:
                # The replica closed the connection on this request and then refused the resend: the
                # request killed it (os._exit, out of memory). That is the request's answer, not
                # "no replica": a 502, and no Retry-After that invites sending it again.
                return _json_error(502, "BadGateway", f"The replica closed the connection without an answer "
                                   f"and is gone ({last_error})")
            if backend is None:
                return _json_error(503, "ServiceUnavailable", f"No replica could take the request: {last_error}",
                                   retry_after=True)
            backend.inflight += 1
            self.pool.inflight += 1
            try:
                data = request_bytes(method, target, backend.port, headers, body)
                status, out, payload = await self.upstream.request(backend.port, data, head=head, timeout=timeout)
                backend.failures = 0
                backend.served += 1
                # A HEAD's answer keeps its content-length: the length the GET's body would have.
                out = [(k, v) for k, v in out if k not in _HOP_HEADERS or (head and k == b"content-length")]
                return status, out, payload
            except Refused as exc:
                # Refused: the request never reached that replica (gone or going); another may take it.
                refused.add(backend)
                last_error = self._failed(backend, exc)
            except Dropped as exc:
                # Closed without an answer: a pooled keep-alive connection the replica had just
                # closed (harmless to resend), or the request killed the replica. Resend once, never
                # more, so that one poisonous request cannot take the whole pool down.
                last_error = self._failed(backend, exc)
                dropped += 1
                if dropped > _RESENDS:
                    return _json_error(502, "BadGateway", f"The replica closed the connection without an answer "
                                       f"({last_error})")
            except TimeoutError:
                return _json_error(504, "GatewayTimeout", f"Replica {backend.key} did not answer within "
                                   f"{timeout:.1f} s")
            except Broken as exc:  # a broken answer (cut mid-body, bad framing)
                return _json_error(502, "BadGateway", self._failed(backend, exc))
            finally:
                backend.inflight -= 1
                self.pool.inflight -= 1

    def _failed(self, backend: Backend, exc: BaseException) -> str:
        backend.failures += 1
        reason = f"replica {backend.key}: {type(exc).__name__}: {exc}"
        if self.on_backend_failure is not None:
            self.on_backend_failure(backend, reason)
        return reason

    def _record(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, payload: bytes,
                latency_ms: float) -> None:
        request_id = next((v.decode("latin-1") for k, v in headers if k == b"x-request-id"), None) or uuid.uuid4().hex
        sample = self.sample_rate > 0 and random.random() < self.sample_rate
        self.telemetry.record(  # type: ignore[union-attr]
            request_id, status, latency_ms,
            body[:_SAMPLE_LIMIT].decode("utf-8", "replace") if sample else None,
            payload[:_SAMPLE_LIMIT].decode("utf-8", "replace") if sample else None,
        )


def _json_error(status: int, error: str, message: str, *, retry_after: bool = False) -> Answer:
    headers = [(b"content-type", b"application/json")]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    return status, headers, json.dumps({"error": error, "message": message}).encode()


async def probe_ready(session: aiohttp.ClientSession, backend: Backend, timeout: float = 2.0) -> tuple[bool, str]:
    """GET /ready on the replica: (ready, reason). Sets ``backend.info["init_failed"]`` when the
    replica says its ``init()`` failed: it will never become ready, so nobody should wait for it."""
    try:
        async with session.get(backend.url + "/ready", timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            text = await response.text()
            if response.status == 503:
                with contextlib.suppress(ValueError):
                    doc = json.loads(text)
                    if isinstance(doc, dict) and doc.get("status") == "failed":
                        backend.info["init_failed"] = str(doc.get("error") or "init() failed")
            return response.status == 200, f"/ready answered {response.status}: {text[:300]}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"/ready failed: {type(exc).__name__}: {exc}"
