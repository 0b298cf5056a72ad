"""The one gate every user-given datastore path goes through.

A datastore path is a POSIX relative path below the datastore root (``runs/abc/outputs/m.pkl``).
Anything that could name a place outside the root is refused with PathEscapeError, whatever the
backend: a local folder follows ``..`` and absolute paths, Azure Blob names are URL-encoded on
the wire, and the REST API percent-decodes what clients send. Because some layer may decode a
name once more, percent-encoded forms are decoded until they stop changing and every decoded
form must pass the same checks. Percent signs are kept literally in the returned path: the
checks are about what a name could become, not a rewrite of what the user asked for.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from airflow_aml.exceptions import PathEscapeError, ValidationError

# ``C:``, ``c:x``: a drive (absolute or drive-relative) on Windows, whichever slash follows.
_DRIVE = re.compile(r"^[A-Za-z]:")
# Enough for any honest name; a name that still changes after this many decodings is an attack.
_MAX_DECODE_ROUNDS = 8


def _decoded_forms(path: str) -> list[str]:
    forms = [path]
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(forms[-1], errors="strict")
        if decoded == forms[-1]:
            return forms
        forms.append(decoded)
    raise PathEscapeError(f"Datastore path {path!r} is percent-encoded too many times")


def _check_form(original: str, form: str) -> None:
    if "\x00" in form:
        raise PathEscapeError(f"Datastore path {original!r} contains a NUL byte")
    if "\\" in form:
        raise PathEscapeError(
            f"Datastore path {original!r} contains a backslash: use '/' to separate folders"
        )
    if form.startswith("/") or _DRIVE.match(form):
        raise PathEscapeError(
            f"Datastore path {original!r} is absolute or names a drive: give a path relative to the datastore root"
        )
    if any(segment == ".." for segment in form.split("/")):
        raise PathEscapeError(f"Datastore path {original!r} contains '..', which would leave the datastore root")


def normalize_path(path: str, *, allow_empty: bool = False) -> str:
    """The canonical form of ``path``: ``a//./b/`` -> ``a/b``.

    Raises PathEscapeError for absolute paths (``/x``, ``C:\\x``, ``\\\\host\\x``), ``..``
    segments (also percent-encoded, once or more), backslashes and NUL bytes; ValidationError
    for a non-string, or an empty path (the root itself) unless ``allow_empty``.
    """
    if not isinstance(path, str):
        raise ValidationError(f"Datastore path must be a string, not {type(path).__name__}: {path!r}")
    try:
        forms = _decoded_forms(path)
    except UnicodeDecodeError as exc:
        raise PathEscapeError(f"Datastore path {path!r} percent-encodes bytes that are not UTF-8") from exc
    for form in forms:
        _check_form(path, form)
    normalized = "/".join(segment for segment in path.split("/") if segment not in ("", "."))
    if not normalized and not allow_empty:
        raise ValidationError(f"Datastore path {path!r} is empty: name a file or folder below the root")
    return normalized


def join_path(*parts: str) -> str:
    """Join datastore path parts and normalize the result (empty parts are skipped)."""
    return normalize_path("/".join(part for part in parts if part), allow_empty=True)
