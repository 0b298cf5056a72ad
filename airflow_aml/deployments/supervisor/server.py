"""The front's listening socket, its HTTP server (``front_http.FrontServer``) and the event loop.

uvloop is imported when used: the SDK imports this package for ``Supervisor`` alone (tests do),
and only the supervisor process serves.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets made
    # with it, and without TCP_NODELAY a response could wait ~40 ms for the client's delayed ACK
    # (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _front_server(front: Any, limits: Any = None) -> Any:
    """``limits``: the deployment's ``ConnectionLimits`` (header deadline, waiting-connection cap),
    shared with the supervisor so that an update changes them in place. Keep-alive connections
    idle 30 s are closed; at shutdown, requests in progress get 5 s to be answered."""
    from airflow_aml.deployments.front_http import FrontServer

    return FrontServer(front, limits, keep_alive_timeout=30.0, shutdown_timeout=5.0)


def _run_loop(main: Any) -> int:
    """uvloop when installed (the front costs less CPU on it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
