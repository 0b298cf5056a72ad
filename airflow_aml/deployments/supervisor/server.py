"""The front's HTTP server: its listening socket, uvicorn set up for it, and the event loop.

uvicorn and uvloop are imported when used: the SDK imports this package for ``Supervisor`` alone
(tests do), and only the supervisor process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets made
    # with it, and without TCP_NODELAY every response (head and body: two writes) waits ~40 ms
    # for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _uvicorn_config(app: Any, limits: Any = None) -> Any:
    """``limits``: the deployment's ``ConnectionLimits`` (header deadline, waiting-connection cap),
    shared with the supervisor so that an update changes them in place."""
    import uvicorn

    from airflow_aml.runtime.scoring.connections import ConnectionLimits, guarded_protocol

    return uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=30,
        http=guarded_protocol(limits or ConnectionLimits()),
        timeout_graceful_shutdown=5,
        server_header=False, date_header=False,  # the replica's own pass through: no duplicates
    )


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal handlers: the supervisor owns SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    return Server


def _front_server(config: Any) -> Any:
    return _server_class()(config)


def _run_loop(main: Any) -> int:
    """uvloop when installed (uvicorn's own choice; the front costs less CPU on it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
