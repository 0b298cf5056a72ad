"""The workspace UI inside Airflow's own web UI: a real ``airflow api-server`` with the plugin,
its navigation entry "ML workspace" (react_apps) loading the bundle from /aml/ui, the pages
answering as the signed-in Airflow user (simple auth manager)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from airflow_aml.workspace import Workspace
from tests.system.airflow_processes import AirflowProcesses, wait_for
from tests.system.test_service_in_airflow import PLUGIN_SHIM, ROOT, _entry_point_installed
from tests.unit.service.test_ui_browser import CHROMIUM, SCREENSHOTS, STEPS

pytestmark = pytest.mark.slow
WORKSPACE = "shared"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowProcesses, str]]:
    home = tmp_path_factory.mktemp("airflow-ui")
    (home / "dags").mkdir()
    (home / "plugins").mkdir()
    if not _entry_point_installed():
        (home / "plugins" / "aml_plugin.py").write_text(PLUGIN_SHIM)
    store_uri = f"sqlite:///{home / 'aml' / 'aml.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AML_HOME", str(home / "aml"))
        ws = Workspace.create(WORKSPACE, store_uri=store_uri, datastore_root=home / "aml" / "data", principal="alice")
        run = ws.experiment("training").start_logging(display_name="nightly")
        for step in range(STEPS):
            run.log("loss", 1 / (step + 1), step=step)
        run.flush()
        run.complete()
    processes = AirflowProcesses(home, dags_folder=home / "dags", env={
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:admin,bob:viewer",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AML_STORE_URI": store_uri,
        "AML_HOME": str(home / "aml"),
        "PYTHONPATH": str(ROOT),
    })
    processes.airflow("db", "migrate")
    try:
        processes.start("api-server")
        page = f"{processes.base_url}/aml/ui/"
        wait_for("the mounted UI", lambda: httpx.get(page, timeout=10).status_code == 200, timeout=90)
        yield processes, run.id
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


def signed_in(browser: Browser, airflow: AirflowProcesses, user: str) -> Page:
    """A tab carrying the JWT Airflow's login sets as the ``_token`` cookie."""
    password = json.loads((airflow.home / "simple_auth_manager_passwords.json.generated").read_text())[user]
    answer = httpx.post(f"{airflow.base_url}/auth/token", json={"username": user, "password": password}, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": answer.json()["access_token"], "url": airflow.base_url}])
    return context.new_page()


def test_the_nav_entry_opens_the_workspace_ui_as_the_airflow_user(
    browser: Browser, airflow: tuple[AirflowProcesses, str],
) -> None:
    processes, run_id = airflow
    page = signed_in(browser, processes, "alice")
    page.goto(f"{processes.base_url}/plugin/ml_workspace")
    expect(page.get_by_test_id("aml-plugin")).to_be_attached(timeout=30_000)
    expect(page.get_by_test_id("principal")).to_contain_text("alice", timeout=15_000)
    expect(page.get_by_test_id("workspaces")).to_contain_text(WORKSPACE)
    page.goto(f"{processes.base_url}/plugin/ml_workspace#/workspaces/{WORKSPACE}/runs/{run_id}")
    chart = page.locator("[data-testid=metric-chart][data-metric=loss]")
    expect(chart).to_have_attribute("data-points", str(STEPS))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ui-run-in-airflow.png"))


def test_an_airflow_user_without_a_role_sees_no_workspace(
    browser: Browser, airflow: tuple[AirflowProcesses, str],
) -> None:
    processes, _ = airflow
    page = signed_in(browser, processes, "bob")
    page.goto(f"{processes.base_url}/plugin/ml_workspace")
    expect(page.get_by_test_id("principal")).to_contain_text("bob", timeout=30_000)
    expect(page.get_by_text("You have a role on no workspace.")).to_be_visible()
