"""Secret values and web-service keys a task handles through the SDK are registered with Airflow's
secrets masker: what Airflow then redacts from task logs, rendered fields and XComs.

The real task run (the supervisor's log) is checked by tests/system/test_airflow_processes.py;
here, that the SDK hands every value over, and only through the Airflow layer.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

from airflow.sdk.log import redact

import airflow_aml.hooks.workspace  # noqa: F401  registers the masker, as every operator's import does
from airflow_aml import secrets_store
from airflow_aml.deployments.keys import new_keys, read_keys, store_keys
from airflow_aml.secrets_store import on_reveal
from airflow_aml.workspace import Workspace


def test_secret_values_and_keys_are_masked(workspace: Workspace) -> None:
    # The masker is process-wide: a value no other test registers, so that a shorter secret another
    # test left behind (say "hunter2") cannot mask part of it and change the line.
    password = f"pw-{uuid.uuid4().hex}"
    workspace.set_secret("db-password", password)
    keys = new_keys()
    store_keys(workspace, "svc", keys)  # what creating a web service does
    # Read back in this process, as a task would (set alone masks too: the value passed through).
    assert workspace.get_secret("db-password") == password
    assert read_keys(workspace, "svc") == (keys["primary"], keys["secondary"])
    line = f"password {password}, keys {keys['primary']} {keys['secondary']}"
    assert redact(line) == "password ***, keys *** ***"


def test_listeners_see_every_value_once_registered(workspace: Workspace, monkeypatch) -> None:
    monkeypatch.setattr(secrets_store, "_REVEAL_LISTENERS", [])  # this test's listeners only
    seen: list[str] = []
    on_reveal(seen.append)
    on_reveal(seen.append)  # registering twice calls once
    workspace.set_secret("token", "abc-123")
    workspace.get_secret("token")
    assert seen == ["abc-123", "abc-123"]

    def broken(value: str) -> None:
        raise RuntimeError("masker down")

    on_reveal(broken)
    assert workspace.get_secret("token") == "abc-123"  # a failing listener never breaks the read


def test_the_sdk_alone_imports_no_airflow_for_this() -> None:
    code = "import airflow_aml.secrets_store, sys; print('airflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
