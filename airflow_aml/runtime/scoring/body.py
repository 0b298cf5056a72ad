"""Reading a ``/score`` body: JSON only, size-limited before it is parsed.

The limit is enforced twice: a declared ``Content-Length`` over it is refused before a byte is
read, and a body without one (chunked) is counted while it streams in, so a client can never make
the server hold more than ``limit`` bytes. Bodies are parsed as JSON and nothing else: no pickle,
no form data.

Strict JSON (RFC 8259): Python's parser accepts ``NaN`` and ``Infinity``, turns ``1e400`` into an
infinite float, and raises a plain ``ValueError`` for an integer longer than the interpreter's
digit limit (4,300 by default). A model then fails on such input with a 500 that blames the
model, or the request escapes as an unhandled error; all of them are the client's input, so they
are refused here, with the reason, as 400s.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from starlette.requests import ClientDisconnect, Request

from airflow_aml.runtime.scoring.errors import HttpError

_JSON = "application/json"


def check_content_type(value: str | None) -> None:
    """415 unless the body is declared JSON. No declared type is taken as JSON, the only format served."""
    if value is None or value == _JSON:  # the usual case, decided without parsing
        return
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != _JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise HttpError(415, f"Content-Type {value!r} is not served: send {_JSON}", "UnsupportedMediaType")
    for param in params.split(";"):
        key, _, charset = param.partition("=")
        if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise HttpError(415, f"Content-Type {value!r}: JSON bodies must be UTF-8", "UnsupportedMediaType")


def check_declared_length(value: str | None, limit: int) -> None:
    """413 at once for a ``Content-Length`` over ``limit`` (the body is then never read)."""
    if value is not None and value.isdigit() and int(value) > limit:
        raise _too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 as soon as more than ``limit`` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # nobody will read the answer; it is counted all the same
        raise HttpError(400, "The client disconnected before its body arrived", "ClientDisconnected") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes) -> tuple[str, Any]:
    """The body as text (what a scoring script's ``run()`` receives) and parsed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"The body is not UTF-8 text: {exc}", "MalformedJson") from exc
    try:
        return text, json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise HttpError(
            400, f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})", "MalformedJson"
        ) from exc
    except _NotJsonNumber as exc:
        raise HttpError(400, str(exc), exc.type) from exc
    except ValueError as exc:  # the only other ValueError json.loads raises: an integer over the digit limit
        raise HttpError(
            400, f"Invalid input: an integer has more than {sys.get_int_max_str_digits()} digits", "InvalidInput"
        ) from exc
    except RecursionError as exc:
        raise HttpError(400, "Malformed JSON: nested too deeply", "MalformedJson") from exc


class _NotJsonNumber(ValueError):
    def __init__(self, message: str, type_: str) -> None:
        super().__init__(message)
        self.type = type_


def _refuse_constant(name: str) -> Any:
    raise _NotJsonNumber(f"Malformed JSON: {name} is not a JSON number (RFC 8259)", "MalformedJson")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value - value != 0.0:  # inf - inf is nan; a finite float gives 0.0 (faster than math.isinf here)
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise _NotJsonNumber(f"Invalid input: the number {shown} is out of the range of a 64-bit float",
                             "InvalidInput")
    return value


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"The request body is larger than the limit of {limit} bytes", "PayloadTooLarge")
