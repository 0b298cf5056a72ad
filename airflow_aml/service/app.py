"""The workspace service: one FastAPI application, the one door to a shared workspace.

    airflow-aml service --host 127.0.0.1 --port 8765          # standalone (uvicorn)
    create_app(store_uri, authenticator=...)                  # mounted (e.g. in Airflow's api-server)

Everything under ``/api/v1`` needs a token (deny by default); ``/openapi.json`` is readable
without one. The routes: the metadata store (``store_routes``, built from one table), datastore
objects (``file_routes``), a run's files and snapshot entries (``run_file_routes``), secret
values (``secret_routes``), tokens (``token_routes``), MLflow's tracking
API for the ``mlflow`` client (``service.mlflow``, under ``/api/v1/workspaces/<ws>/mlflow``),
and the workspace UI's static files at ``/ui/`` (``ui_routes``).
CORS is off (no middleware): browsers reach the service only from its own origin.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_aml import config
from airflow_aml.exceptions import ValidationError
from airflow_aml.service.airflow_object_routes import airflow_object_router
from airflow_aml.service.deployment_routes import deployment_router
from airflow_aml.service.errors import install_error_handlers
from airflow_aml.service.file_routes import file_router
from airflow_aml.service.follow_routes import follow_router
from airflow_aml.service.identity import Authenticator
from airflow_aml.service.mlflow import mlflow_router
from airflow_aml.service.requests import ServiceState
from airflow_aml.service.run_file_routes import run_file_router
from airflow_aml.service.secret_routes import secret_router
from airflow_aml.service.series_routes import series_router
from airflow_aml.service.store_routes import store_router
from airflow_aml.service.token_routes import token_router
from airflow_aml.service.tokens import TokenAuthenticator
from airflow_aml.service.ui_routes import ui_routes
from airflow_aml.store import get_store
from airflow_aml.store.http.endpoints import API_PREFIX
from airflow_aml.store.http.errors import error_body
from airflow_aml.store.sql.store import SqlStore
from airflow_aml.store.sql.tokens import SqlTokenStore

# Where ``airflow-aml service`` leaves the store URI for ``app_from_environment``: each of uvicorn's
# worker processes imports the app anew, so the URI cannot travel as an argument.
ENV_SERVICE_STORE_URI = "AML_SERVICE_STORE_URI"
MAX_JSON_BYTES = 32 * 1024 * 1024  # a log_batch of 10,000 metrics is ~1.5 MB
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024**3


def create_app(
    store_uri: str | None = None, *, authenticator: Authenticator | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The service over the SQL store at ``store_uri`` (default: the embedded one under
    ``$AML_HOME``). ``authenticator`` decides who a request is; the default accepts the service's
    personal access tokens and run tokens."""
    uri = config.absolute_store_uri(store_uri) if store_uri else config.default_store_uri()
    store = get_store(uri)
    if not isinstance(store, SqlStore):
        raise ValidationError(f"The workspace service serves a SQL store, not {config.redact(uri)!r}")
    tokens = SqlTokenStore(store.engine)
    app = FastAPI(
        title="airflow-aml workspace service", version=_version(),
        description="Workspaces, runs, models, images, deployments and activities of airflow-aml.",
        docs_url=None, redoc_url=None,  # Swagger UI would load from a CDN: the JSON is enough
    )
    app.state.aml = ServiceState(
        store=store, store_uri=uri, tokens=tokens,
        authenticator=authenticator or TokenAuthenticator(tokens, store), max_upload_bytes=max_upload_bytes,
    )
    install_error_handlers(app)
    app.router.routes.extend(_api_routes())
    app.router.routes.extend(ui_routes())  # static files, no token: the data calls carry the credentials
    app.add_middleware(BodyLimit, max_json_bytes=MAX_JSON_BYTES)
    return app


@functools.cache
def _api_routes() -> list[BaseRoute]:
    """The API's routes, built once per process: building them (FastAPI analyses every
    signature with pydantic) costs about a second, and they hold no per-app state (handlers
    reach the app's state through the request)."""
    api = APIRouter(prefix=API_PREFIX)
    routers = (token_router(), store_router(), follow_router(), file_router(), secret_router(),
               deployment_router(), series_router(), run_file_router(), mlflow_router(), airflow_object_router())
    for router in routers:
        api.include_router(router)
    return list(api.routes)


def app_from_environment() -> FastAPI:
    """uvicorn's factory (``airflow_aml.service.app:app_from_environment``, ``factory=True``): the
    service over ``$AML_SERVICE_STORE_URI`` (default: as ``create_app``)."""
    return create_app(os.environ.get(ENV_SERVICE_STORE_URI) or None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airflow-aml")
    except PackageNotFoundError:
        return "0+unknown"


# Uploads that stream to disk and have their own limit (max_upload_bytes): datastore objects and
# MLflow artifacts.
_STREAMED = ("/objects/", "/mlflow-artifacts/artifacts/")


class BodyLimit:
    """Refuses a request body over the limit with 413 before it is read into memory (uploads of
    files stream to disk and have their own limit)."""

    def __init__(self, app: ASGIApp, *, max_json_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(part in scope["path"] for part in _STREAMED):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_json_bytes:
            await _too_large(send, self.max_json_bytes)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_json_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_json_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps(error_body("ValidationError", f"Request body larger than {limit} bytes")).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
