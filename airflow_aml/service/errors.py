"""Every failure answers one body, ``{"error": {"code", "message"}}``, with the status the
exception stands for (``airflow_aml.store.http.errors``): ours, FastAPI's request validation,
Starlette's 404/405, and anything unexpected (500, logged here, its details not sent)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_aml.exceptions import AmlError
from airflow_aml.store.http.errors import error_body, status_for

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Invalid request"), (401, "No valid token"), (403, "The caller's role does not allow this"),
        (404, "Not found"), (409, "Conflicts with the object's state or an existing name"),
        (422, "The request does not match the schema"),
    )
}


def _answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def _aml_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _answer(status, type(exc).__name__, str(exc), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}" for error in exc.errors()
    )
    # A malformed metric is the SDK's InvalidMetricError, whichever layer catches it.
    metric = any(part in ("metric", "metrics") for error in exc.errors() for part in error.get("loc", ()))
    return _answer(422, "InvalidMetricError" if metric else "ValidationError", f"Invalid request: {problems}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFoundError", 405: "MethodNotAllowed", 413: "ValidationError"}.get(exc.status_code, "HTTPError")
    return _answer(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return _answer(500, "InternalError", f"The service failed: {type(exc).__name__} (see the service log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AmlError, _aml_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
