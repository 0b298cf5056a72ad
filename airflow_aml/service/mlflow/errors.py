"""Errors of the MLflow routes in MLflow's own format, ``{"error_code": "...", "message": "..."}``,
with the HTTP status MLflow's server gives each code (``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``):
the MLflow client turns exactly these into ``MlflowException``s with that ``error_code``.

The route class catches what a handler *and its dependencies* raise (authentication included),
so that an MLflow client never sees the service's other error body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_aml import exceptions

log = logging.getLogger(__name__)

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"

STATUS = {
    INVALID_PARAMETER_VALUE: 400, RESOURCE_ALREADY_EXISTS: 400, RESOURCE_DOES_NOT_EXIST: 404,
    PERMISSION_DENIED: 403, UNAUTHENTICATED: 401, NOT_IMPLEMENTED: 501, TEMPORARILY_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500,
}

# Most specific first. A param logged again with another value is a ConflictError of ours and
# INVALID_PARAMETER_VALUE in MLflow (its server answers so).
_CODE_BY_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (exceptions.AuthenticationError, UNAUTHENTICATED),
    (exceptions.AuthorizationError, PERMISSION_DENIED),
    (exceptions.NotFoundError, RESOURCE_DOES_NOT_EXIST),
    (exceptions.AlreadyExistsError, RESOURCE_ALREADY_EXISTS),
    (exceptions.ConflictError, INVALID_PARAMETER_VALUE),
    (exceptions.ValidationError, INVALID_PARAMETER_VALUE),
    (exceptions.StoreError, TEMPORARILY_UNAVAILABLE),
)


class MlflowError(Exception):
    """An MLflow-level refusal raised by the MLflow routes themselves (a missing field ...)."""

    def __init__(self, message: str, code: str = INVALID_PARAMETER_VALUE) -> None:
        super().__init__(message)
        self.code = code


def mlflow_error_response(code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code == UNAUTHENTICATED else None
    return JSONResponse({"error_code": code, "message": message}, status_code=STATUS[code], headers=headers)


def response_for(request: Request, exc: Exception) -> Response:
    if isinstance(exc, MlflowError):
        return mlflow_error_response(exc.code, str(exc))
    if isinstance(exc, RequestValidationError):
        return mlflow_error_response(INVALID_PARAMETER_VALUE, f"Invalid request: {exc.errors()}")
    for cls, code in _CODE_BY_CLASS:
        if isinstance(exc, cls):
            return mlflow_error_response(code, str(exc))
    log.exception("%s %s failed", request.method, request.url.path)
    return mlflow_error_response(INTERNAL_ERROR, f"The service failed: {type(exc).__name__} (see the service log)")


class MlflowRoute(APIRoute):
    """An APIRoute whose failures answer in MLflow's error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except json.JSONDecodeError as exc:
                return mlflow_error_response(INVALID_PARAMETER_VALUE, f"The request body is not JSON: {exc}")
            except Exception as exc:  # every failure, in MLflow's format
                return response_for(request, exc)

        return handler
