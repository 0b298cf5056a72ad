"""The Airflow plugin: cheap to import (every Airflow process imports plugins), the service built
once, on its first request, and declared under Airflow's ``airflow.plugins`` entry point."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from airflow_aml import plugin

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_plugin_imports_no_service_and_no_store() -> None:
    probe = (
        "import sys, airflow_aml.plugin as p\n"
        "assert p.AmlPlugin.name == 'airflow_aml'\n"
        "loaded = [m for m in sys.modules if m.startswith(('airflow_aml.service', 'airflow_aml.store', 'fastapi'))]\n"
        "print(loaded)\n"
        "assert not [m for m in loaded if m.startswith('airflow_aml')], loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_plugin_mounts_the_service_at_aml() -> None:
    [mount] = plugin.AmlPlugin.fastapi_apps
    assert mount["url_prefix"] == "/aml" and mount["name"] == "ML workspace"
    assert isinstance(mount["app"], plugin.LazyServiceApp)


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["airflow.plugins"] == {"airflow_aml": "airflow_aml.plugin:AmlPlugin"}


def test_the_service_is_built_once_on_the_first_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    served: list[str] = []

    async def service(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])

    def build() -> Any:
        built.append(1)
        return service

    monkeypatch.setattr(plugin, "build_service_app", build)
    app = plugin.LazyServiceApp()

    async def requests() -> None:
        await asyncio.gather(*(app({"type": "http", "path": f"/{i}"}, None, None) for i in range(5)))  # type: ignore[arg-type]

    asyncio.run(requests())
    assert built == [1] and sorted(served) == [f"/{i}" for i in range(5)]


def test_the_real_build_uses_the_store_uri_and_airflows_authenticator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from airflow_aml.service.airflow_auth import airflow_authenticator

    uri = f"sqlite:///{tmp_path / 'aml.db'}"
    monkeypatch.setenv("AML_STORE_URI", uri)
    app = plugin.build_service_app()
    state = app.state.aml  # type: ignore[attr-defined]
    assert state.store_uri == uri and state.authenticator is airflow_authenticator


def test_the_plugin_puts_the_workspace_ui_in_airflows_navigation() -> None:
    [app] = [app for app in plugin.AmlPlugin.react_apps if app["destination"] == "nav"]
    assert app["name"] == "ML workspace" and app["destination"] == "nav" and app["url_route"] == "ml_workspace"
    # The bundle and icons are the service's static files, under the plugin's mount.
    assert app["bundle_url"] == "/aml/ui/aml-ui.js"
    assert app["icon"] == "/aml/ui/icon.svg" and app["icon_dark_mode"] == "/aml/ui/icon-dark.svg"
    for name in ("aml-ui.js", "icon.svg", "icon-dark.svg"):
        assert (ROOT / "airflow_aml" / "service" / "ui_static" / name).is_file(), name


def test_airflows_plugin_manager_accepts_the_react_app() -> None:
    """Airflow's own response model for the /plugins API validates the entry (fields and types)."""
    from airflow.api_fastapi.core_api.datamodels.plugins import ReactAppResponse

    for app in plugin.AmlPlugin.react_apps:
        assert ReactAppResponse.model_validate(app).bundle_url == "/aml/ui/aml-ui.js"


def test_the_objects_tab_is_on_the_task_instance_and_dag_run_pages() -> None:
    apps = {app["destination"]: app for app in plugin.AmlPlugin.react_apps if app["destination"] != "nav"}
    assert set(apps) == {"task_instance", "dag_run"}
    for app in apps.values():
        assert app["name"] == "ML objects" and app["bundle_url"] == "/aml/ui/aml-ui.js"
        assert app["icon"] == "/aml/ui/icon.svg"
    # Airflow drops an app whose url_route another app took: every route is its own.
    routes = [app["url_route"] for app in plugin.AmlPlugin.react_apps]
    assert len(set(routes)) == len(routes) == 3
    # Airflow finds the component under the app's name: the bundle registers it there.
    assert f'"{plugin.OBJECTS_APP_NAME}"' in (ROOT / "ui" / "src" / "main.tsx").read_text()


def test_the_ui_urls_follow_airflows_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    app = plugin.react_app()
    assert app["bundle_url"] == "/team-a/aml/ui/aml-ui.js" and app["icon"] == "/team-a/aml/ui/icon.svg"
