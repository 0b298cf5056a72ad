"""The HTTP client of the workspace service: one pooled ``httpx.Client`` per store URI, the
caller's token, timeouts, retries, and the service's error body turned back into our exceptions.

Retried: idempotent calls (GET, PUT, DELETE) on a lost connection or a 502/503/504, and any call
that never reached the service (the connection could not be made). A POST that may have reached
it is retried only when it carries an idempotency key: then the service refuses a second row for
the same key and the SDK follows the first one.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from airflow_aml.config import ENV_RUN_TOKEN, ENV_TOKEN  # one spelling for launchers and clients
from airflow_aml.exceptions import AuthenticationError, StoreError, ValidationError
from airflow_aml.store.http.endpoints import API_PREFIX
from airflow_aml.store.http.errors import exception_for

__all__ = ["ENV_RUN_TOKEN", "ENV_TOKEN", "ServiceClient", "split_uri"]

ENV_SERVICE_URI = "AML_SERVICE_URI"

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRY_STATUSES = frozenset({502, 503, 504})
_ATTEMPTS = 5
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def split_uri(uri: str) -> tuple[str, str | None]:
    """``http://:TOKEN@host:8765/aml`` -> (``http://host:8765/aml``, ``TOKEN``); the token may
    also be the user part (``http://TOKEN@host``)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"Not a workspace service URI: {uri!r} (expected http(s)://host[:port][/prefix])")
    token = unquote(parts.password or parts.username or "") or None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), token


def token_from_environment() -> str | None:
    return os.environ.get(ENV_RUN_TOKEN) or os.environ.get(ENV_TOKEN) or None


class ServiceClient:
    """Requests to one workspace service as one caller."""

    def __init__(self, uri: str, *, token: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url, uri_token = split_uri(uri)
        self.token = token or uri_token or token_from_environment()
        if not self.token:
            raise AuthenticationError(
                f"No token for the workspace service at {self.base_url}: set ${ENV_TOKEN} (a personal access "
                f"token from 'airflow-aml token create') or put it in the URI (http://:TOKEN@host:port)"
            )
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, timeout=TIMEOUT, transport=transport,
            headers={"Authorization": f"Bearer {self.token}", "User-Agent": "airflow-aml"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def __repr__(self) -> str:
        return f"ServiceClient({self.base_url!r})"  # never the token

    def close(self) -> None:
        self._http.close()

    def request(
        self, verb: str, path: str, *, params: Mapping[str, Any] | None = None, content: bytes | None = None,
        json_body: bool = False, headers: Mapping[str, str] | None = None, retry_post: bool = False,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """The answer to one call (after retries); our exception for an error answer."""
        all_headers = dict(headers or {})
        if json_body:
            all_headers["Content-Type"] = "application/json"
        retryable = verb in _IDEMPOTENT or retry_post
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                response = self._http.request(verb, path, params=params, content=content, headers=all_headers,
                                              timeout=timeout or self._http.timeout)
            except httpx.ConnectError as exc:  # never reached the service: always safe to retry
                if _is_certificate_error(exc):  # retrying cannot fix a certificate
                    raise StoreError(
                        f"The workspace service at {self.base_url} presented a certificate this client does not "
                        f"trust ({exc}): set SSL_CERT_FILE to the CA bundle that signed it"
                    ) from exc
                if attempt == _ATTEMPTS:
                    raise StoreError(f"The workspace service at {self.base_url} is unreachable: {exc}") from exc
            except httpx.TransportError as exc:
                if not retryable or attempt == _ATTEMPTS:
                    raise StoreError(f"{verb} {path} to the workspace service failed: {exc}") from exc
            else:
                if response.status_code in _RETRY_STATUSES and retryable and attempt < _ATTEMPTS:
                    response.close()
                else:
                    return check(response)
            time.sleep(min(0.2 * 2 ** (attempt - 1), 3.0))
        raise AssertionError("unreachable")

    def wait_activity(self, activity_id: str, *, after: datetime, timeout: float) -> dict[str, Any]:
        """The activity (as JSON) once it changed after ``after`` or ended, or after ``timeout``
        seconds: the service's long-poll (``GET /activities/{id}/wait``)."""
        answer = self.request(
            "GET", f"/activities/{quote(activity_id, safe='')}/wait",
            params={"after": after.isoformat(), "timeout": f"{timeout:.3f}"},
            timeout=httpx.Timeout(timeout + TIMEOUT.read, connect=TIMEOUT.connect),  # type: ignore[operator]
        )
        result: dict[str, Any] = answer.json()
        return result

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """A streamed GET (downloads); our exception for an error answer."""
        with self._http.stream("GET", path) as response:
            if response.is_error:
                response.read()
                check(response)
            yield response

    def upload(self, path: str, content: Iterator[bytes] | bytes, *, headers: Mapping[str, str]) -> httpx.Response:
        return check(self._http.put(path, content=content, headers=dict(headers),
                                    timeout=httpx.Timeout(300.0, connect=5.0)))


def _is_certificate_error(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    raise exception_for(response.status_code, body)
