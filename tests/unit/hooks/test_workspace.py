from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from airflow_aml.exceptions import ValidationError, WorkspaceNotFoundError
from airflow_aml.hooks.datastore import AmlDatastoreHook
from airflow_aml.hooks.settings import WorkspaceSettings
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.workspace import Workspace


def test_constructing_a_hook_connects_to_nothing() -> None:
    with mock.patch.object(AmlWorkspaceHook, "get_connection") as get_connection, \
         mock.patch("airflow_aml.hooks.settings.Workspace") as workspace_cls:
        hook = AmlWorkspaceHook(aml_conn_id="anything")
        AmlDatastoreHook(aml_conn_id="anything", datastore_name="x")
    get_connection.assert_not_called()
    workspace_cls.get.assert_not_called()
    assert hook.aml_conn_id == "anything"


def test_hook_opens_the_connections_workspace(aml_conn: str, workspace: Workspace) -> None:
    hook = AmlWorkspaceHook(aml_conn_id=aml_conn)
    assert hook.get_conn().name == workspace.name
    assert hook.test_connection() == (True, "Workspace 'ws' reachable")
    assert hook.run_url("r1") == "http://127.0.0.1:8765/workspaces/ws/runs/r1"


def test_default_connection_is_the_embedded_workspace(aml_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AML_DEFAULT", raising=False)
    hook = AmlWorkspaceHook()
    ws = hook.workspace
    assert ws.name == "default"
    assert ws.store_uri == f"sqlite:///{(aml_home / 'aml.db').resolve()}"
    assert ws.get_default_datastore().name == "workspaceblobstore"


def test_missing_named_connection_is_one_clear_error(monkeypatch) -> None:
    with pytest.raises(ValidationError, match="Connection 'nope' is not defined"):
        _ = AmlWorkspaceHook(aml_conn_id="nope").workspace


def test_connection_of_another_type_or_unknown_extra(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WRONG", json.dumps({"conn_type": "postgres", "host": "x"}))
    with pytest.raises(ValidationError, match="type 'postgres'"):
        _ = AmlWorkspaceHook(aml_conn_id="wrong").settings
    monkeypatch.setenv(
        "AIRFLOW_CONN_TYPO", json.dumps({"conn_type": "aml_workspace", "extra": {"store_url": "sqlite://"}})
    )
    with pytest.raises(ValidationError, match="unknown extra field\\(s\\) store_url"):
        _ = AmlWorkspaceHook(aml_conn_id="typo").settings


def test_password_is_substituted_into_the_store_uri() -> None:
    conn = mock.Mock(
        conn_id="c", schema="ws", password="s3cret", host=None, port=None,
        extra_dejson={"store_uri": "postgresql+psycopg://aml@db:5432/aml", "create_if_missing": "false"},
    )
    settings = WorkspaceSettings.from_connection(conn)
    assert settings.store_uri == "postgresql+psycopg://aml:s3cret@db:5432/aml"
    assert settings.create_if_missing is False


def test_create_if_missing_false(aml_home: Path, tmp_path: Path) -> None:
    settings = WorkspaceSettings(workspace="other", store_uri=f"sqlite:///{tmp_path}/x.db", create_if_missing=False)
    with pytest.raises(WorkspaceNotFoundError):
        settings.open()


def test_datastore_hook_round_trip(aml_conn: str, tmp_path: Path) -> None:
    hook = AmlDatastoreHook(aml_conn_id=aml_conn)
    src = tmp_path / "data"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n1,2\n")
    assert hook.upload(src, "datasets/iris") == ["datasets/iris/a.csv"]
    assert hook.exists("datasets/iris/a.csv")
    assert [o.path for o in hook.list("datasets")] == ["datasets/iris/a.csv"]
    hook.download("datasets/iris", tmp_path / "out")
    assert (tmp_path / "out" / "a.csv").read_text() == "x,y\n1,2\n"
    hook.delete("datasets/iris")
    assert not hook.exists("datasets/iris/a.csv")
