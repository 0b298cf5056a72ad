"""The workspace service mounted in a real ``airflow api-server`` by the airflow_aml plugin, its
callers authenticated by Airflow's own JWT (simple auth manager, two users with passwords).

Only the api-server is started (no scheduler): the plugin's mount and its authentication are
all this proves. The store is a SQLite file named by ``$AML_STORE_URI``, created beforehand with
a workspace owned by ``alice``; ``bob`` holds no role on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest

from airflow_aml.workspace import Workspace
from tests.system.airflow_processes import AirflowProcesses, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = "shared"
# When the installed distribution predates the entry point (an editable install made before it
# was added), Airflow finds the plugin through its plugins folder instead: the same class.
PLUGIN_SHIM = "from airflow_aml.plugin import AmlPlugin  # noqa: F401\n"


def _entry_point_installed() -> bool:
    return any(ep.value == "airflow_aml.plugin:AmlPlugin" for ep in entry_points(group="airflow.plugins"))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowProcesses]:
    home = tmp_path_factory.mktemp("airflow-service")
    (home / "dags").mkdir()
    (home / "plugins").mkdir()
    if not _entry_point_installed():
        (home / "plugins" / "aml_plugin.py").write_text(PLUGIN_SHIM)
    store_uri = f"sqlite:///{home / 'aml' / 'aml.db'}"
    Workspace.create(WORKSPACE, store_uri=store_uri, datastore_root=home / "aml" / "data", principal="alice")
    processes = AirflowProcesses(home, dags_folder=home / "dags", env={
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:admin,bob:viewer",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AML_STORE_URI": store_uri,
        "AML_HOME": str(home / "aml"),
        # This checkout's code, whichever copy the virtualenv's editable install points at.
        "PYTHONPATH": str(ROOT),
    })
    processes.airflow("db", "migrate")
    try:
        processes.start("api-server")
        yield processes
    finally:
        processes.stop()


def _password(airflow: AirflowProcesses, user: str) -> str:
    passwords = airflow.home / "simple_auth_manager_passwords.json.generated"
    return json.loads(passwords.read_text())[user]


def _token(airflow: AirflowProcesses, user: str) -> str:
    answer = httpx.post(f"{airflow.base_url}/auth/token", timeout=10,
                        json={"username": user, "password": _password(airflow, user)})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["access_token"]


def _get(airflow: AirflowProcesses, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{airflow.base_url}/aml{path}", headers=headers, timeout=30)


def test_the_openapi_document_needs_no_token(airflow: AirflowProcesses) -> None:
    answer = wait_for("the mounted service", lambda: (r := _get(airflow, "/openapi.json")).status_code == 200 and r,
                      timeout=60)
    assert answer.json()["info"]["title"] == "airflow-aml workspace service"


def test_a_route_needs_airflows_token(airflow: AirflowProcesses) -> None:
    assert _get(airflow, "/api/v1/workspaces").status_code == 401
    assert _get(airflow, "/api/v1/workspaces", "not-a-jwt").status_code == 401
    answer = _get(airflow, "/api/v1/workspaces", _token(airflow, "alice"))
    assert answer.status_code == 200, answer.text
    assert WORKSPACE in json.dumps(answer.json())


def test_the_ui_cookie_is_accepted(airflow: AirflowProcesses) -> None:
    answer = httpx.get(f"{airflow.base_url}/aml/api/v1/workspaces/{WORKSPACE}", timeout=30,
                       cookies={"_token": _token(airflow, "alice")})
    assert answer.status_code == 200, answer.text


def test_an_airflow_user_without_a_role_is_refused(airflow: AirflowProcesses) -> None:
    bob = _token(airflow, "bob")
    answer = _get(airflow, f"/api/v1/workspaces/{WORKSPACE}", bob)
    assert answer.status_code in (403, 404), answer.text
    listed = _get(airflow, "/api/v1/workspaces", bob)
    assert listed.status_code == 200 and WORKSPACE not in json.dumps(listed.json())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
