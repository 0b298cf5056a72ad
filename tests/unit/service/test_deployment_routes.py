"""The deployment routes' refusals: a Reader gets neither keys nor a new key, and learns nothing
of whether the deployment exists (the role is checked before the lookup). The routes' answers
with a running deployment are exercised by the browser test of the deployments page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_aml.entities import Role
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "service-home"))
    with serve(f"sqlite:///{tmp_path / 'aml.db'}") as running:
        ws = Workspace.create("ws", store_uri=running.uri_for("alice"))
        ws.assign_role("rita", Role.READER)
        ws.assign_role("carol", Role.CONTRIBUTOR)
        yield running


def _call(served: Served, principal: str, method: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.token(principal)}"}
    return httpx.request(method, f"{served.url}/api/v1/workspaces/ws/deployments/{path}", headers=headers)


@pytest.mark.parametrize(("method", "path"), [("GET", "svc/keys"), ("POST", "svc/keys/primary:regenerate")])
def test_a_reader_is_refused_keys_before_the_lookup(served: Served, method: str, path: str) -> None:
    answer = _call(served, "rita", method, path)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "AuthorizationError"
    assert "Reader" in answer.json()["error"]["message"]


def test_a_contributor_is_told_the_deployment_does_not_exist(served: Served) -> None:
    answer = _call(served, "carol", "GET", "svc/keys")
    assert answer.status_code == 404, answer.text
    assert "svc" in answer.json()["error"]["message"]


def test_a_reader_may_read_logs_and_only_valid_keys_are_regenerated(served: Served) -> None:
    assert _call(served, "rita", "GET", "svc/logs").status_code == 404  # allowed, but there is none
    assert _call(served, "alice", "POST", "svc/keys/tertiary:regenerate").status_code == 422
    assert _call(served, "anyone-without-role", "GET", "svc/logs").status_code == 403
