"""One error body for the whole service, and the exception each status/code stands for.

The service answers ``{"error": {"code": "<ExceptionClassName>", "message": "..."}}``; the HTTP
store raises the very exception class the code names (``RunNotFoundError`` ...), so that code
written against the embedded store catches the same errors over HTTP.
"""

from __future__ import annotations

from typing import Any

from airflow_aml import exceptions
from airflow_aml.exceptions import AmlError

# Most specific first: the first base class found decides the status.
_STATUS_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (exceptions.AuthenticationError, 401),
    (exceptions.AuthorizationError, 403),
    (exceptions.NotFoundError, 404),
    (exceptions.AlreadyExistsError, 409),
    (exceptions.ConflictError, 409),
    (exceptions.IntegrityError, 409),
    (exceptions.StorageFullError, 507),
    (exceptions.ValidationError, 400),
    (exceptions.UnsafeArchiveError, 400),
    (exceptions.WaitTimeoutError, 504),
    (exceptions.SchemaOutOfDateError, 503),
    (exceptions.StoreError, 503),
)

_FALLBACK_BY_STATUS: dict[int, type[AmlError]] = {
    400: exceptions.ValidationError,
    401: exceptions.AuthenticationError,
    403: exceptions.AuthorizationError,
    404: exceptions.NotFoundError,
    409: exceptions.ConflictError,
    413: exceptions.ValidationError,
    422: exceptions.ValidationError,
}


def status_for(exc: BaseException) -> int:
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def exception_for(status: int, body: Any) -> AmlError:
    """The exception a service answer stands for (its code if it names one of ours)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    cls = getattr(exceptions, code, None)
    if not (isinstance(cls, type) and issubclass(cls, AmlError)):
        cls = _FALLBACK_BY_STATUS.get(status, exceptions.StoreError if status >= 500 else AmlError)
    return cls(message or f"The workspace service answered HTTP {status}")
