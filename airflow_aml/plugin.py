"""The Airflow plugin: the workspace service mounted in Airflow's api-server at ``/aml``, and its UI
in Airflow's navigation ("ML workspace", a ``react_apps`` entry loading ``/aml/ui/aml-ui.js``), and
a tab on the task instance and DAG run pages ("ML objects": what that task or DAG run created).

Requests are authenticated as Airflow's signed-in user (``airflow_aml.service.airflow_auth``);
the store is ``$AML_STORE_URI``, else the embedded default (``config.default_store_uri()``).

Airflow imports every plugin in every process that loads plugins (scheduler, workers, the CLI),
not only in the api-server. So importing this module imports nothing of the service and opens no
database: the app is built on the first request it receives (``LazyServiceApp``), in the one
process that serves it. A missing optional dependency or an unreachable store then fails that
request (and is logged), not Airflow's start.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

URL_PREFIX = "/aml"
UI_ROUTE = "ml_workspace"  # the page Airflow's UI shows the workspace UI at: /plugin/ml_workspace


def _under_base_url(path: str) -> str:
    """``path`` under the api-server's ``[api] base_url`` (a deployment behind a path prefix)."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    return (urlparse(base).path if "://" in base else base).rstrip("/") + path


def react_app() -> dict[str, Any]:
    """The workspace UI in Airflow's navigation: Airflow's UI import()s the bundle the service
    serves (``service/ui_routes.py``) and renders the component it registers."""
    return {
        "name": "ML workspace",
        "bundle_url": _under_base_url(f"{URL_PREFIX}/ui/aml-ui.js"),
        "destination": "nav",
        "url_route": UI_ROUTE,
        "icon": _under_base_url(f"{URL_PREFIX}/ui/icon.svg"),
        "icon_dark_mode": _under_base_url(f"{URL_PREFIX}/ui/icon-dark.svg"),
    }


OBJECTS_APP_NAME = "ML objects"  # the tab's label; main.tsx registers its component under this name
OBJECTS_ROUTES = {"task_instance": "ml_objects_task", "dag_run": "ml_objects_run"}  # unique per Airflow


def objects_apps() -> list[dict[str, Any]]:
    """A tab on Airflow's task instance and DAG run pages: what that task (or DAG run) created in
    the workspaces (``pages/TaskObjects.tsx``). Airflow renders the component the bundle
    registers under the app's name, with the page's dagId, runId, taskId and mapIndex as props."""
    return [
        {
            "name": OBJECTS_APP_NAME,
            "bundle_url": _under_base_url(f"{URL_PREFIX}/ui/aml-ui.js"),
            "destination": destination,
            "url_route": url_route,
            "icon": _under_base_url(f"{URL_PREFIX}/ui/icon.svg"),
            "icon_dark_mode": _under_base_url(f"{URL_PREFIX}/ui/icon-dark.svg"),
        }
        for destination, url_route in OBJECTS_ROUTES.items()
    ]


def build_service_app() -> ASGIApp:
    """The service over ``$AML_STORE_URI`` (else the embedded store), as Airflow's users."""
    from airflow_aml import config
    from airflow_aml.service.airflow_auth import airflow_authenticator
    from airflow_aml.service.app import create_app

    store_uri = os.environ.get(config.ENV_STORE_URI) or config.default_store_uri()
    return create_app(store_uri, authenticator=airflow_authenticator)


class LazyServiceApp:
    """An ASGI app that builds the service on its first request (once, then delegates)."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # a mounted app is not sent lifespan events; be safe if it is
            return
        await (self._app or await self._build())(scope, receive, send)

    async def _build(self) -> ASGIApp:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._app is None:
                # create_app opens the store (and may migrate it): blocking, off the event loop.
                try:
                    self._app = await asyncio.to_thread(build_service_app)
                except Exception:
                    # This request fails (500); the next one tries again (a store back online).
                    log.exception("airflow-aml: the workspace service at %s could not be built", URL_PREFIX)
                    raise
                log.info("airflow-aml workspace service mounted at %s", URL_PREFIX)
        return self._app


class AmlPlugin(AirflowPlugin):
    name = "airflow_aml"
    fastapi_apps: list[Any] = [{"app": LazyServiceApp(), "url_prefix": URL_PREFIX, "name": "ML workspace"}]
    react_apps: list[Any] = [react_app(), *objects_apps()]
