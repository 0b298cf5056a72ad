"""A workspace service on 127.0.0.1 for tests: uvicorn in a thread, over a SQLite or PostgreSQL
store, with personal access tokens minted straight into its token table."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import uvicorn

from airflow_aml.service.app import create_app
from airflow_aml.service.tokens import mint_personal_token
from airflow_aml.store.sql.tokens import SqlTokenStore


@dataclass
class Served:
    url: str
    store_uri: str
    tokens: SqlTokenStore

    def token(self, principal: str, *, expires_in: timedelta | None = None) -> str:
        token, _ = mint_personal_token(self.tokens, principal, name=f"test {principal}", expires_in=expires_in)
        return token

    def uri_for(self, principal: str) -> str:
        """An ``http://`` store URI carrying a new token of ``principal``."""
        host = self.url.removeprefix("http://")
        return f"http://:{self.token(principal)}@{host}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(store_uri: str) -> Iterator[Served]:
    app = create_app(store_uri)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="aml-test-service", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test workspace service did not start")
        time.sleep(0.02)
    # Not /openapi.json: generating the document costs a second per app.
    assert httpx.get(url + "/api/v1/whoami", timeout=5).status_code == 401
    try:
        yield Served(url=url, store_uri=store_uri, tokens=app.state.aml.tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
