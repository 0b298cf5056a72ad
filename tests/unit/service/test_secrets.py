"""Secrets of a served workspace: the service encrypts and decrypts with its own key; a client
never sees ciphertext nor holds the key, and only the explicit read carries a value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_aml.entities import Role
from airflow_aml.exceptions import AuthorizationError, SecretNotFoundError
from airflow_aml.store.sql import SqlStore
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "service-home"))  # the service's key lives here
    with serve(f"sqlite:///{tmp_path / 'aml.db'}") as running:
        yield running


def test_values_roundtrip_through_the_service_and_rest_encrypted(served: Served, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    owner = Workspace.create("ws", store_uri=served.uri_for("alice"))
    owner.assign_role("carol", Role.CONTRIBUTOR)
    owner.assign_role("rita", Role.READER)
    # The client's own $AML_HOME has another key: the value still reads, because the service decrypts.
    monkeypatch.setenv("AML_HOME", str(tmp_path / "client-home"))
    owner.set_secret("storage-key", "s3cr3t-value")
    assert Workspace.get("ws", store_uri=served.uri_for("carol")).get_secret("storage-key") == "s3cr3t-value"
    with pytest.raises(AuthorizationError, match="'rita' \\(Reader\\) may not read_secrets"):
        Workspace.get("ws", store_uri=served.uri_for("rita")).get_secret("storage-key")
    with pytest.raises(AuthorizationError, match="may not manage"):
        Workspace.get("ws", store_uri=served.uri_for("carol")).set_secret("other", "x")
    with pytest.raises(SecretNotFoundError, match="Secret 'nope' not found"):
        owner.get_secret("nope")
    # At rest: ciphertext only.
    stored = SqlStore(served.store_uri)
    try:
        assert b"s3cr3t-value" not in stored.get_secret("ws", "storage-key")
    finally:
        stored.close()


def test_no_response_but_the_explicit_read_carries_a_value(served: Served) -> None:
    Workspace.create("ws", store_uri=served.uri_for("alice")).set_secret("api-key", "VALUE-123")
    headers = {"Authorization": f"Bearer {served.token('alice')}"}
    listing = httpx.get(f"{served.url}/api/v1/workspaces/ws/secrets", headers=headers)
    assert listing.status_code == 200 and listing.json()["items"] == ["api-key"]
    assert "VALUE-123" not in listing.text
    value = httpx.get(f"{served.url}/api/v1/workspaces/ws/secrets/api-key", headers=headers)
    assert value.json() == {"name": "api-key", "value": "VALUE-123"}
    anonymous = httpx.get(f"{served.url}/api/v1/workspaces/ws/secrets/api-key")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationError"
    assert "VALUE-123" not in anonymous.text
    assert httpx.delete(f"{served.url}/api/v1/workspaces/ws/secrets/api-key", headers=headers).status_code == 204
    assert httpx.get(f"{served.url}/api/v1/workspaces/ws/secrets/api-key", headers=headers).status_code == 404
