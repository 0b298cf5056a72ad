"""The HTTP store's client: URIs, tokens, error bodies back to our exceptions, retries."""

from __future__ import annotations

import httpx
import pytest

from airflow_aml import exceptions
from airflow_aml.config import redact
from airflow_aml.store import get_store
from airflow_aml.store.http.client import ServiceClient, split_uri
from airflow_aml.store.http.errors import exception_for, status_for
from airflow_aml.store.http.store import HttpStore


def test_token_in_the_uri_is_taken_out_and_never_shown() -> None:
    assert split_uri("http://:aml_pat_abc@127.0.0.1:8765/aml/") == ("http://127.0.0.1:8765/aml", "aml_pat_abc")
    assert split_uri("https://aml_pat_abc@example.org") == ("https://example.org", "aml_pat_abc")
    store = get_store("http://:aml_pat_secret@127.0.0.1:1", cached=False)
    assert isinstance(store, HttpStore) and "aml_pat_secret" not in repr(store) + repr(store.client)
    shown = redact("store http://:aml_pat_secret@127.0.0.1:1 and aml_run_xyz")
    assert shown == "store http://:***@127.0.0.1:1 and aml_run_***"
    with pytest.raises(exceptions.ValidationError, match="Not a workspace service URI"):
        split_uri("ftp://host")


def test_no_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AML_TOKEN", raising=False)
    monkeypatch.delenv("AML_RUN_TOKEN", raising=False)
    with pytest.raises(exceptions.AuthenticationError, match="set \\$AML_TOKEN"):
        ServiceClient("http://127.0.0.1:1")
    monkeypatch.setenv("AML_RUN_TOKEN", "aml_run_x")
    assert ServiceClient("http://127.0.0.1:1").token == "aml_run_x"  # a run's processes


@pytest.mark.parametrize("error", [
    exceptions.RunNotFoundError("Run 'r' not found"), exceptions.AuthorizationError("no"),
    exceptions.AuthenticationError("who"), exceptions.DuplicateAttemptError("dup"),
    exceptions.ConflictError("busy"), exceptions.InvalidMetricError("bad"), exceptions.IntegrityError("sha"),
])
def test_an_error_body_becomes_the_same_exception(error: exceptions.AmlError) -> None:
    body = {"error": {"code": type(error).__name__, "message": str(error)}}
    back = exception_for(status_for(error), body)
    assert type(back) is type(error) and str(back) == str(error)


def test_unknown_codes_fall_back_by_status() -> None:
    assert type(exception_for(404, {"error": {"code": "Nope", "message": "m"}})) is exceptions.NotFoundError
    assert type(exception_for(502, "not json")) is exceptions.StoreError


def test_idempotent_calls_are_retried_and_unsafe_posts_are_not() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503, json={"error": {"code": "StoreError", "message": "busy"}})

    client = ServiceClient("http://:aml_pat_t@127.0.0.1:1", transport=httpx.MockTransport(handler))
    with pytest.raises(exceptions.StoreError, match="busy"):
        client.request("GET", "/whoami")
    assert calls == ["GET"] * 5
    calls.clear()
    with pytest.raises(exceptions.StoreError, match="busy"):
        client.request("POST", "/workspaces/ws/runs", content=b"{}", json_body=True)
    assert calls == ["POST"]  # may have reached the service: not repeated without an idempotency key
