"""What an ``aml_workspace`` connection says, as plain data.

Separate from the hook so that the trigger (which runs in the triggerer's event loop and reads the
connection asynchronously) and the hook share one reading of the connection's fields.

Fields of the connection:
- ``schema``: the workspace name (default ``default``)
- ``password``: optional, substituted into the store URI's password (so it is kept masked)
- extra ``store_uri``: SQLAlchemy URI of the metadata store (default: SQLite under $AML_HOME,
  i.e. ``$AIRFLOW_HOME/aml/aml.db``)
- extra ``datastore_root``: folder of the default local datastore when the workspace is created
- extra ``create_if_missing`` (default true), ``principal``, ``ui_base_url``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from airflow_aml import config
from airflow_aml.exceptions import ValidationError, WorkspaceNotFoundError
from airflow_aml.workspace import Workspace

DEFAULT_WORKSPACE = "default"
DEFAULT_UI_BASE_URL = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class WorkspaceSettings:
    workspace: str = DEFAULT_WORKSPACE
    store_uri: str | None = None
    datastore_root: str | None = None
    create_if_missing: bool = True
    principal: str | None = None
    ui_base_url: str = DEFAULT_UI_BASE_URL

    @classmethod
    def from_connection(cls, conn: Any) -> WorkspaceSettings:
        prefix = "extra__aml_workspace__"  # how older connection forms stored custom fields
        extra: dict[str, Any] = {
            (key[len(prefix):] if key.startswith(prefix) else key): value
            for key, value in (conn.extra_dejson or {}).items()
            if value not in (None, "")
        }
        known = {"store_uri", "datastore_root", "create_if_missing", "principal", "ui_base_url"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ValidationError(
                f"Connection {conn.conn_id!r}: unknown extra field(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        store_uri = extra.get("store_uri") or None
        if store_uri and conn.password:
            store_uri = make_url(store_uri).set(password=conn.password).render_as_string(hide_password=False)
        create = extra.get("create_if_missing", True)
        if isinstance(create, str):
            create = create.strip().lower() in ("1", "true", "yes", "on")
        return cls(
            workspace=conn.schema or DEFAULT_WORKSPACE,
            store_uri=store_uri,
            datastore_root=extra.get("datastore_root") or None,
            create_if_missing=bool(create),
            principal=extra.get("principal") or None,
            ui_base_url=(extra.get("ui_base_url") or DEFAULT_UI_BASE_URL).rstrip("/"),
        )

    def resolved_store_uri(self) -> str:
        return self.store_uri or config.default_store_uri()

    def open(self) -> Workspace:
        """The workspace these settings name, created on first use when allowed."""
        uri = self.resolved_store_uri()
        try:
            return Workspace.get(self.workspace, store_uri=uri, principal=self.principal)
        except WorkspaceNotFoundError:
            if not self.create_if_missing:
                raise
            return Workspace.create(
                self.workspace, store_uri=uri, datastore_root=self.datastore_root,
                principal=self.principal, exist_ok=True,
            )
