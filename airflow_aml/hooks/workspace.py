"""``AmlWorkspaceHook``: owns the ``aml_workspace`` connection and builds the workspace client."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from airflow_aml.entities import ActivityRecord
from airflow_aml.exceptions import ValidationError
from airflow_aml.hooks import wasb as _wasb  # noqa: F401  (wasb_conn_id for azure_blob datastores)
from airflow_aml.hooks.settings import WorkspaceSettings
from airflow_aml.runs import Run
from airflow_aml.secrets_store import on_reveal
from airflow_aml.workspace import Workspace

# Every secret value and web-service key a task reads or creates through the SDK is masked in
# its log, rendered fields and XComs (and told to the task's supervisor process).
on_reveal(mask_secret)


class AmlWorkspaceHook(BaseHook):
    """Interact with an airflow-aml workspace.

    With no ``aml_default`` connection defined, the embedded default is used: a workspace named
    ``default`` in the SQLite store under ``$AIRFLOW_HOME/aml``, created on first use.

    :param aml_conn_id: an ``aml_workspace`` connection.
    """

    conn_name_attr = "aml_conn_id"
    default_conn_name = "aml_default"
    conn_type = "aml_workspace"
    hook_name = "AML Workspace"

    def __init__(self, aml_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aml_conn_id = aml_conn_id

    # ------------------------------------------------------------------ connection -> client (lazy)
    @classmethod
    def settings_for(cls, conn: Any, conn_id: str) -> WorkspaceSettings:
        if conn is None:
            return WorkspaceSettings()
        if conn.conn_type and conn.conn_type != cls.conn_type:
            raise ValidationError(
                f"Connection {conn_id!r} has type {conn.conn_type!r}; AmlWorkspaceHook needs {cls.conn_type!r}"
            )
        if conn.password:
            # Airflow masks connection passwords it reads itself; a connection built or read some
            # other way (a trigger, a test) must not print the service token either, wherever the
            # store URI carrying it is logged.
            mask_secret(conn.password)
        return WorkspaceSettings.from_connection(conn)

    @cached_property
    def settings(self) -> WorkspaceSettings:
        try:
            conn = self.get_connection(self.aml_conn_id)
        except AirflowNotFoundException:
            if self.aml_conn_id != self.default_conn_name:
                raise ValidationError(
                    f"Connection {self.aml_conn_id!r} is not defined: add an {self.conn_type!r} connection "
                    f"or use {self.default_conn_name!r} for the embedded default workspace"
                ) from None
            conn = None
        return self.settings_for(conn, self.aml_conn_id)

    @cached_property
    def workspace(self) -> Workspace:
        return self.settings.open()

    def get_conn(self) -> Workspace:
        return self.workspace

    def test_connection(self) -> tuple[bool, str]:
        try:
            ws = self.workspace
            ws.store.list_experiments(ws.name)
            return True, f"Workspace {ws.name!r} reachable"
        except Exception as exc:
            return False, str(exc)

    # ------------------------------------------------------------------ what operators need
    def get_run(self, run_id: str) -> Run:
        return self.workspace.get_run(run_id)

    def get_activity(self, activity_id: str) -> ActivityRecord:
        return self.workspace.get_activity(activity_id)

    def run_url(self, run_id: str) -> str:
        return f"{self.settings.ui_base_url}/workspaces/{self.workspace.name}/runs/{run_id}"

    def model_url(self, name: str, version: int) -> str:
        return f"{self.settings.ui_base_url}/workspaces/{self.workspace.name}/models/{name}/versions/{version}"
