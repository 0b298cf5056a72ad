"""An ``aml_workspace`` connection naming a workspace service: host or extra store_uri, the
personal access token in the password field, masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk.log import redact

from airflow_aml.exceptions import ValidationError
from airflow_aml.hooks.settings import WorkspaceSettings
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve


def _conn(**fields: object) -> mock.Mock:
    values = {"conn_id": "c", "schema": "demo", "password": None, "host": None, "port": None, "extra_dejson": {}}
    values.update(fields)
    return mock.Mock(**values)


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("http://127.0.0.1:8765", None, "http://:aml_pat_abc@127.0.0.1:8765"),
    ("127.0.0.1", 8765, "http://:aml_pat_abc@127.0.0.1:8765"),
    ("https://aml.example.com/api/", None, "https://:aml_pat_abc@aml.example.com/api"),
])
def test_a_host_is_a_service_url_carrying_the_token(host: str, port: int | None, expected: str) -> None:
    settings = WorkspaceSettings.from_connection(_conn(host=host, port=port, password="aml_pat_abc"))
    assert settings.store_uri == expected
    assert settings.served


def test_extra_store_uri_may_be_a_service_url() -> None:
    settings = WorkspaceSettings.from_connection(
        _conn(password="aml_pat_x/y", extra_dejson={"store_uri": "http://10.0.0.5:8765"}))
    assert settings.store_uri == "http://:aml_pat_x%2Fy@10.0.0.5:8765"
    without = WorkspaceSettings.from_connection(_conn(extra_dejson={"store_uri": "http://10.0.0.5:8765"}))
    assert without.store_uri == "http://10.0.0.5:8765"  # the client then reads $AML_TOKEN


def test_host_and_store_uri_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="either a host"):
        WorkspaceSettings.from_connection(_conn(host="h", extra_dejson={"store_uri": "sqlite://"}))


@pytest.fixture
def served(aml_home: Path, tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


def test_the_hook_opens_a_served_workspace_and_masks_the_token(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AML_PRINCIPAL", raising=False)
    token = served.token("alice")
    Workspace.create("demo", store_uri=served.uri_for("alice"))
    monkeypatch.setenv("AIRFLOW_CONN_AML_SERVED", json.dumps(
        {"conn_type": "aml_workspace", "host": served.url, "schema": "demo", "password": token}))
    hook = AmlWorkspaceHook(aml_conn_id="aml_served")
    ws = hook.workspace
    assert ws.name == "demo" and ws.principal == "alice"
    assert ws.store_uri == served.url.replace("http://", f"http://:{token}@")
    assert hook.test_connection() == (True, "Workspace 'demo' reachable")
    assert token not in redact(f"opening {ws.store_uri}")
