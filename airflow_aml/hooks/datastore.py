"""``AmlDatastoreHook``: files in a workspace datastore (upload, download, list, delete)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from airflow_aml.datastores import AbstractDatastore, ObjectInfo
from airflow_aml.hooks.workspace import AmlWorkspaceHook


class AmlDatastoreHook(BaseHook):
    """A datastore of the workspace named by an ``aml_workspace`` connection.

    :param aml_conn_id: the workspace connection.
    :param datastore_name: a registered datastore; None is the workspace's default datastore.
    """

    conn_name_attr = "aml_conn_id"
    default_conn_name = AmlWorkspaceHook.default_conn_name
    conn_type = AmlWorkspaceHook.conn_type
    hook_name = "AML Datastore"

    def __init__(
        self, aml_conn_id: str = default_conn_name, datastore_name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.aml_conn_id = aml_conn_id
        self.datastore_name = datastore_name

    @cached_property
    def workspace_hook(self) -> AmlWorkspaceHook:
        return AmlWorkspaceHook(aml_conn_id=self.aml_conn_id)

    @cached_property
    def datastore(self) -> AbstractDatastore:
        ws = self.workspace_hook.workspace
        return ws.get_datastore(self.datastore_name) if self.datastore_name else ws.get_default_datastore()

    def get_conn(self) -> AbstractDatastore:
        return self.datastore

    def upload(self, source: str | Path, target_path: str = "", *, overwrite: bool = True) -> list[str]:
        """Upload a file or a folder (recursively); returns the stored paths."""
        return [info.path for info in self.datastore.upload(source, target_path, overwrite=overwrite)]

    def download(self, prefix: str, target_dir: str | Path, *, overwrite: bool = True) -> list[str]:
        return [str(p) for p in self.datastore.download(target_dir, prefix, overwrite=overwrite)]

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return list(self.datastore.list(prefix))

    def exists(self, path: str) -> bool:
        return self.datastore.exists(path)

    def delete(self, path: str) -> None:
        self.datastore.delete(path)
