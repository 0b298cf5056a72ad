"""The errors of the scoring server, each with the HTTP answer it becomes.

Kept apart from ``airflow_aml.exceptions`` because these describe one request, not the workspace:
the handler turns an ``HttpError`` into ``{"error": ..., "type": ...}`` with its status code.
"""

from __future__ import annotations

from collections.abc import Mapping


class HttpError(Exception):
    """A request answered with ``status``; ``type`` names the failure for clients and metrics."""

    def __init__(self, status: int, message: str, type_: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.headers = dict(headers or {})
        self.request_body = b""  # the body, when it had been read: for the telemetry's input sample


class ScoringInputError(ValueError):
    """Request data a scorer refuses (wrong shape, not numbers): answered 400, not 500.

    The built-in scorers raise it; a scoring script may raise it too, to tell the client its
    input was wrong rather than the model failing.
    """


class ScorerSetupError(RuntimeError):
    """The bundle cannot be served: no entry script, a missing model file, a missing package."""
