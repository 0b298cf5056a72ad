"""What an ``aml_workspace`` connection says, as plain data.

Separate from the hook so that the trigger (which runs in the triggerer's event loop and reads the
connection asynchronously) and the hook share one reading of the connection's fields.

Fields of the connection:
- ``schema``: the workspace name (default ``default``)
- ``password``: optional, substituted into the store URI's password (so it is kept masked)
- extra ``store_uri``: SQLAlchemy URI of the metadata store (default: SQLite under $AML_HOME,
  i.e. ``$AIRFLOW_HOME/aml/aml.db``), or the URL of a workspace service (``http://host:8765``)
- ``host`` (and ``port``): a workspace service instead of ``store_uri``: ``http://127.0.0.1:8765``
  or ``127.0.0.1`` with port 8765 (http assumed). For a service, ``password`` is the personal
  access token (``airflow-aml token create``).
- extra ``datastore_root``: folder of the default local datastore when the workspace is created
- extra ``create_if_missing`` (default true), ``principal``, ``ui_base_url``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

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
        if conn.host:
            if store_uri:
                raise ValidationError(
                    f"Connection {conn.conn_id!r}: give either a host (a workspace service) or extra "
                    "store_uri, not both"
                )
            store_uri = _service_url(conn.host, conn.port)
        if store_uri and _is_service(store_uri):
            store_uri = _with_token(store_uri, conn.password)
        elif store_uri and conn.password:
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

    @property
    def served(self) -> bool:
        """True when the connection names a workspace service (``http(s)://``)."""
        return bool(self.store_uri) and _is_service(str(self.store_uri))

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


def _is_service(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https")


def _service_url(host: str, port: int | None) -> str:
    url = host if "://" in host else f"http://{host}"
    if port and urlsplit(url).port is None:
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, f"{parts.netloc}:{port}", parts.path, "", ""))
    return url.rstrip("/")


def _with_token(url: str, token: str | None) -> str:
    """``url`` carrying ``token`` as its password (``http://:TOKEN@host:port``); without a token the
    client falls back to ``$AML_TOKEN``."""
    if not token:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f":{quote(token, safe='')}@{netloc}", parts.path, parts.query, ""))
