"""Connection deadlines for uvicorn: a slow client cannot hold a server's connections.

uvicorn times out idle keep-alive connections, but nothing else: a client that connects and sends
nothing, or sends its request headers one byte a second (slowloris), keeps its connection, and
the task serving it, for ever. Enough of them exhaust file descriptors and memory while each costs
the attacker almost nothing. This module adds what reverse proxies have (nginx's
``client_header_timeout``, the connection cap behind ``worker_connections``):

- a **header deadline**: a request's headers must be complete ``header_timeout`` seconds after the
  connection opened or after the first byte of a keep-alive connection's next request, else the
  answer is ``408`` and the connection is closed;
- a **cap on waiting connections** (open, but with no request admitted: idle keep-alive
  connections and ones whose headers are still arriving): beyond ``max_idle_connections`` the
  longest-waiting one is closed. Admitted requests are never touched, and a legitimate client,
  whose headers arrive in one packet, is the newest waiter for microseconds, so a flood of slow
  connections evicts its own oldest members first.

The request *body* has its own deadline where it is read (the scoring service's
``request_timeout_seconds``, the deployment front's ``body_timeout_seconds``).

uvicorn has neither setting (0.54), and its protocol classes are its extension point
(``Config(http=...)``, also as an import string, which survives ``--workers``' spawn). The
mixin below wraps the public protocol methods of both of uvicorn's HTTP/1.1 implementations
(httptools and h11) and reads no parser state: "headers complete" is seen as the protocol starting
a new request cycle.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

ENV_HEADER_TIMEOUT = "AML_SCORING_HEADER_TIMEOUT"
ENV_MAX_IDLE_CONNECTIONS = "AML_SCORING_MAX_IDLE_CONNECTIONS"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_IDLE_CONNECTIONS = 256
# The protocol class for uvicorn's ``http=`` (an import string: a worker process imports it).
GUARDED_PROTOCOL = "airflow_aml.runtime.scoring.connections:GuardedHttpProtocol"


@dataclass
class ConnectionLimits:
    """Mutable on purpose: a deployment's front applies a new configuration without a restart."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> ConnectionLimits:
        return cls(
            header_timeout=float(environ.get(ENV_HEADER_TIMEOUT) or DEFAULT_HEADER_TIMEOUT),
            max_idle_connections=int(environ.get(ENV_MAX_IDLE_CONNECTIONS) or DEFAULT_MAX_IDLE_CONNECTIONS),
        )


class ConnectionGuard:
    """One server's waiting connections, oldest first, and what was done to them."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.waiting: dict[Any, None] = {}  # a dict keeps insertion order: the first is the oldest
        self.timed_out = 0  # connections answered 408 for headers that did not arrive in time
        self.evicted = 0  # waiting connections closed to stay under the cap

    def wait(self, protocol: Any) -> None:
        self.waiting.pop(protocol, None)
        self.waiting[protocol] = None
        while len(self.waiting) > max(1, self.limits.max_idle_connections):
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            self.evicted += 1
            oldest._aml_close()

    def admit(self, protocol: Any) -> None:
        self.waiting.pop(protocol, None)


# One guard per uvicorn server (its ServerState is shared by the server's connections).
_GUARDS: weakref.WeakKeyDictionary[Any, ConnectionGuard] = weakref.WeakKeyDictionary()
_ENV_LIMITS: ConnectionLimits | None = None


def guard_of(server_state: Any) -> ConnectionGuard | None:
    """The guard of the server whose state this is (None before its first connection)."""
    return _GUARDS.get(server_state)


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": f"The request headers did not arrive within {seconds:g} s",
                       "type": "RequestTimeout"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class _GuardMixin:
    """Header deadline and waiting-connection cap around a uvicorn HTTP/1.1 protocol."""

    limits: ClassVar[ConnectionLimits | None] = None  # None: from the environment (the scoring server)

    # What the uvicorn protocol provides.
    transport: asyncio.Transport
    server_state: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        limits = type(self).limits
        if limits is None:
            global _ENV_LIMITS
            limits = _ENV_LIMITS = _ENV_LIMITS or ConnectionLimits.from_env()
        guard = _GUARDS.get(self.server_state)
        if guard is None:
            guard = _GUARDS[self.server_state] = ConnectionGuard(limits)
        self._aml_guard = guard
        self._aml_timer: asyncio.TimerHandle | None = None
        self._aml_waiting = False
        self._aml_enter_waiting()
        self._aml_arm()  # a connection that sends nothing is as half-open as a slow one

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if not self._aml_waiting:
            return
        if self.cycle is not self._aml_cycle:  # the protocol started a request: its headers are in
            self._aml_admit()
        elif self._aml_timer is None:  # the first bytes of a keep-alive connection's next request
            self._aml_arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # Idle again, unless closing or a pipelined request started (uvicorn's keep-alive timer
        # covers the idle time; the header deadline starts with the next request's first byte).
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._aml_enter_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        self._aml_admit()

    # ------------------------------------------------------------------ internals
    def _aml_enter_waiting(self) -> None:
        self._aml_waiting = True
        self._aml_cycle = self.cycle
        self._aml_guard.wait(self)

    def _aml_admit(self) -> None:
        self._aml_waiting = False
        if self._aml_timer is not None:
            self._aml_timer.cancel()
            self._aml_timer = None
        self._aml_guard.admit(self)

    def _aml_arm(self) -> None:
        self._aml_timer = self.loop.call_later(self._aml_guard.limits.header_timeout, self._aml_expired)

    def _aml_expired(self) -> None:
        self._aml_timer = None
        if not self._aml_waiting or self.transport.is_closing():
            return
        self._aml_guard.timed_out += 1
        self._aml_guard.admit(self)
        self._aml_waiting = False
        self.transport.write(_timeout_response(self._aml_guard.limits.header_timeout))
        self.transport.close()

    def _aml_close(self) -> None:
        """Evicted to stay under the cap: closed without an answer (nothing was asked yet)."""
        self._aml_waiting = False
        if self._aml_timer is not None:
            self._aml_timer.cancel()
            self._aml_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _protocol_classes() -> tuple[type, type]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(_GuardMixin, H11Protocol):  # type: ignore[misc]
        pass

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional: uvicorn's own "auto" falls back to h11 too
        return GuardedH11, GuardedH11

    class GuardedHttpTools(_GuardMixin, HttpToolsProtocol):  # type: ignore[misc]
        pass

    return GuardedHttpTools, GuardedH11


# httptools when installed (uvicorn's "auto" choice), else h11; the h11 one is kept for tests.
GuardedHttpProtocol, GuardedH11Protocol = _protocol_classes()


def guarded_protocol(limits: ConnectionLimits, base: type | None = None) -> type:
    """A protocol class with these limits (one process: a deployment's front)."""
    return type("LimitedHttpProtocol", (base or GuardedHttpProtocol,), {"limits": limits})
