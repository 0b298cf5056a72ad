"""``create_app``: the FastAPI application of a scoring image.

    POST /score           the scoring script's run(), Azure ML style (key auth when enabled)
    GET  /health          liveness: 200 while the process runs
    GET  /ready           readiness: 200 once init() succeeded, else 503 with the reason
    GET  /metrics         Prometheus text (key auth when enabled)
    GET  /swagger.json    the OpenAPI document, as Azure ML serves it (also /openapi.json)

Every response carries ``x-request-id``: the client's own, or a new one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_aml.exceptions import ValidationError
from airflow_aml.runtime.model import ENV_BUNDLE_DIR
from airflow_aml.runtime.scoring.config import ConfigWatcher, ScoringConfig
from airflow_aml.runtime.scoring.errors import HttpError
from airflow_aml.runtime.scoring.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from airflow_aml.runtime.scoring.service import REQUEST_ID_KEY, ScoringService
from airflow_aml.runtime.scoring.telemetry import TelemetrySink

ENV_CONFIG_PATH = "AML_SCORING_CONFIG"
ENV_LOG_LEVEL = "AML_SCORING_LOG_LEVEL"
_MAX_REQUEST_ID = 128
_SKLEARN_INPUT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
}
_SKLEARN_OUTPUT = {
    "type": "object",
    "properties": {
        "predictions": {"type": "array"},
        "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    },
}
_ERRORS = {
    "400": "Malformed JSON, or input the scorer refuses", "401": "Missing or wrong key",
    "413": "Body over max_request_bytes", "415": "Not JSON", "429": "Too many requests in progress (Retry-After)",
    "500": "run() raised", "503": "init() has not succeeded", "504": "run() took longer than request_timeout_seconds",
}


def create_app(
    bundle_dir: str | Path, config: ScoringConfig | None = None, *, config_path: str | Path | None = None,
    telemetry_sink: TelemetrySink | None = None,
) -> FastAPI:
    """The scoring app for the bundle at ``bundle_dir``.

    ``config_path`` names a config file that is watched (key rotation without restart); otherwise
    ``config`` is used as it is (defaults when None). ``init()`` starts with the app's lifespan.
    """
    if config is not None and config_path is not None:
        raise ValidationError("create_app: give config or config_path, not both")
    if config_path is not None:
        watcher = ConfigWatcher.from_file(config_path)
    else:
        watcher = ConfigWatcher(config if config is not None else ScoringConfig())
    service = ScoringService(bundle_dir, watcher, telemetry_sink=telemetry_sink)
    manifest = service.manifest

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title=f"{manifest.name} (scoring)", version=str(manifest.version), lifespan=lifespan,
        docs_url=None, redoc_url=None,  # no pages that load scripts from a CDN inside an image
    )
    app.state.scoring = service
    app.add_middleware(ScoreShortcut, service=service)  # inner: its answers get the request id too
    app.add_middleware(RequestIdMiddleware)

    builtin = manifest.builtin_scorer == "sklearn" or manifest.builtin_scorer == "onnx"
    input_schema = manifest.input_schema or (_SKLEARN_INPUT if builtin else {})
    output_schema = manifest.output_schema or (_SKLEARN_OUTPUT if builtin else {})

    @app.post(
        "/score", summary="Score", response_class=Response,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": input_schema}}},
            "responses": {
                "200": {"description": "run()'s result", "content": {"application/json": {"schema": output_schema}}},
                **{code: {"description": text} for code, text in _ERRORS.items()},
            },
            "security": [{"bearerAuth": []}],
        },
    )
    async def score(request: Request) -> Response:
        return await service.score(request)

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", summary="Readiness")
    async def ready() -> JSONResponse:
        status, body = service.readiness()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        try:
            service.authorize(request)
        except HttpError as exc:
            return JSONResponse({"error": exc.message, "type": exc.type}, exc.status, headers=exc.headers)
        return Response(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/swagger.json", include_in_schema=False)
    async def swagger() -> JSONResponse:
        return JSONResponse(app.openapi())

    _add_security_scheme(app)
    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker: the bundle and config file come from the environment."""
    # uvicorn configures only its own loggers; ours (init() and run() failures) need a handler too.
    logger = logging.getLogger("airflow_aml")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(os.environ.get(ENV_LOG_LEVEL, "INFO").upper())
    config_path = os.environ.get(ENV_CONFIG_PATH) or None
    return create_app(os.environ[ENV_BUNDLE_DIR], config_path=config_path)


def _add_security_scheme(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class ScoreShortcut:
    """``POST /score`` straight to the service, past FastAPI's routing and endpoint machinery.

    That machinery (route matching, dependency solving, response validation) cost as much CPU per
    request as scoring a row did; ``/score`` needs none of it. The route stays declared on the
    app for the OpenAPI document, and every other path goes through FastAPI as before.
    """

    def __init__(self, app: ASGIApp, service: ScoringService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/score" and scope["method"] == "POST":
            response = await self.service.score(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Puts ``x-request-id`` on every response (the client's, if it sent a sane one) and in the scope.

    Plain ASGI rather than ``BaseHTTPMiddleware``, which would add a task and a stream per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope["headers"]) or os.urandom(16).hex()  # uuid4's entropy, cheaper
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            # Echoed into a response header and the telemetry: only short printable ASCII is kept.
            if 0 < len(value) <= _MAX_REQUEST_ID and all(33 <= b < 127 for b in value):
                return value.decode("ascii")
            return None
    return None
