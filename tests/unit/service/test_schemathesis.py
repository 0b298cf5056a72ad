"""The workspace service against its own OpenAPI document, with schemathesis: generated requests
(valid and not) to every operation, as a workspace's Owner, must never fail the service (5xx),
and every answer must be one the document declares (status code and body schema).

Bounded to a few examples per operation so the whole run stays well under a minute; the
authorization matrix (test_authorization_matrix) covers who may call what.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from airflow_aml.context import DEFAULT_DATASTORE
from airflow_aml.entities import Role, RunStatus
from airflow_aml.service.app import create_app
from airflow_aml.service.tokens import mint_personal_token

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# schemathesis parametrizes at collection, so the app exists at import (over a store in a temporary
# folder, removed by the module fixture); its data and the environment the service reads at
# request time (AML_HOME: the secret key, new workspaces' datastores) are set by the fixture.
# (schemathesis.pytest.from_fixture would avoid this, but fails on pytest 9.)
_ROOT = Path(tempfile.mkdtemp(prefix="aml-schemathesis-"))
APP = create_app(f"sqlite:///{_ROOT / 'aml.db'}")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
_HEADERS: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def service_data() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AML_HOME", str(_ROOT / "home"))
        patch.delenv("AML_STORE_URI", raising=False)
        patch.delenv("AML_SECRET_KEY", raising=False)
        store = APP.state.aml.store
        # Something to find for generated names that happen to hit it ("ws" is short and
        # lowercase, the kind of string the generator tries first).
        store.create_workspace("ws", description="", created_by="olivia", default_datastore=DEFAULT_DATASTORE,
                               datastore={"kind": "local", "config": {"root": str(_ROOT / "ws")}}, owner="olivia")
        store.assign_role("ws", "rita", Role.READER)
        store.create_run(workspace="ws", experiment="exp", submitted_by="olivia", status=RunStatus.RUNNING)
        token, _ = mint_personal_token(APP.state.aml.tokens, "olivia", name="schemathesis", expires_in=None)
        _HEADERS["Authorization"] = f"Bearer {token}"
        yield
        _HEADERS.clear()
    store.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=8, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_service_conforms_to_its_openapi(case: Any) -> None:
    case.call_and_validate(headers=_HEADERS, checks=CHECKS)
