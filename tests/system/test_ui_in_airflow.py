"""The workspace UI inside Airflow's own web UI: a real ``airflow api-server`` with the plugin,
its navigation entry "ML workspace" (react_apps) loading the bundle from /aml/ui, the pages
answering as the signed-in Airflow user (simple auth manager), and the "ML objects" tab of a task
instance's page listing what that task of a real DAG run (``airflow dags test``) created."""

from __future__ import annotations

import json
import textwrap
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
DAG_ID = "ui_objects"
# A run that writes a model file, and the model registered from it: the task-page views' objects.
DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG

    from airflow_aml.operators.model import AmlRegisterModelOperator
    from airflow_aml.operators.run import AmlSubmitRunOperator

    with DAG("ui_objects", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        train = AmlSubmitRunOperator(task_id="train", experiment_name="dag-training", source_directory="{source}",
                                     script="train.py", deferrable=False, poll_interval=1)
        register = AmlRegisterModelOperator(task_id="register", model_name="ui-clf",
                                            run_id="{{{{ ti.xcom_pull(task_ids='train') }}}}")
        train >> register
    """
)
SCRIPT = (
    "from pathlib import Path\n"
    "from airflow_aml.runtime import Run\n"
    "run = Run.get_context()\n"
    "run.log('accuracy', 0.9)\n"
    "Path('outputs').mkdir(exist_ok=True)\n"
    "Path('outputs/model.txt').write_text('weights')\n"
)


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
    source = home / "src"
    source.mkdir()
    (source / "train.py").write_text(SCRIPT)
    (home / "dags" / "ui_objects.py").write_text(DAG.format(source=source))
    connection = {"conn_type": "aml_workspace", "schema": WORKSPACE,
                  "extra": {"store_uri": store_uri, "datastore_root": str(home / "aml" / "data")}}
    processes = AirflowProcesses(home, dags_folder=home / "dags", env={
        "AIRFLOW_CONN_AML_DEFAULT": json.dumps(connection),
        "AML_PRINCIPAL": "alice",
        "AML_PROGRESS": "0",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:admin,bob:viewer",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AML_STORE_URI": store_uri,
        "AML_HOME": str(home / "aml"),
        "PYTHONPATH": str(ROOT),
    })
    processes.airflow("db", "migrate")
    dag_test = processes.airflow("dags", "test", DAG_ID, timeout=600)
    assert "state=success" in dag_test.stdout + dag_test.stderr, dag_test.stdout[-3000:] + dag_test.stderr[-3000:]
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


def _dag_run_id(processes: AirflowProcesses, user: str) -> str:
    """The DAG run ``airflow dags test`` made, as Airflow's own API reports it."""
    password = json.loads((processes.home / "simple_auth_manager_passwords.json.generated").read_text())[user]
    token = httpx.post(f"{processes.base_url}/auth/token", json={"username": user, "password": password},
                       timeout=10).json()["access_token"]
    runs = httpx.get(f"{processes.base_url}/api/v2/dags/{DAG_ID}/dagRuns",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["dag_runs"]
    [dag_run] = runs
    return str(dag_run["dag_run_id"])


def test_the_task_pages_ml_objects_tab_lists_and_links_what_the_task_created(
    browser: Browser, airflow: tuple[AirflowProcesses, str],
) -> None:
    processes, _ = airflow
    dag_run_id = _dag_run_id(processes, "alice")
    ws = Workspace.get(WORKSPACE, store_uri=processes.env["AML_STORE_URI"], principal="alice")
    [run] = ws.experiment("dag-training").get_runs()
    model = ws.get_model("ui-clf")
    assert model.version == 1 and model.record.run_id == run.id  # the DAG registered it from its run
    base = f"{processes.base_url}/dags/{DAG_ID}/runs/{dag_run_id}"
    page = signed_in(browser, processes, "alice")

    # The train task's tab: its run, and not the model another task registered.
    page.goto(f"{base}/tasks/train/plugin/ml_objects_task")
    expect(page.get_by_test_id("aml-objects-plugin")).to_be_attached(timeout=30_000)
    expect(page.locator("[data-testid=task-runs] tr[data-run]")).to_have_count(1, timeout=15_000)
    expect(page.locator(f"[data-testid=task-runs] tr[data-run='{run.id}']")).to_be_visible()
    expect(page.get_by_test_id("task-models")).to_have_count(0)

    # The register task's tab: the model version, and no run.
    page.goto(f"{base}/tasks/register/plugin/ml_objects_task")
    expect(page.locator("[data-testid=task-models] tr[data-model='ui-clf:1']")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("task-runs")).to_have_count(0)

    # The DAG run's tab: both, each with the task that made it; the links open the workspace UI.
    page.goto(f"{base}/plugin/ml_objects_run")
    row = page.locator(f"[data-testid=task-runs] tr[data-run='{run.id}']")
    expect(row).to_contain_text("train", timeout=30_000)
    expect(page.locator("[data-testid=task-models] tr[data-model='ui-clf:1']")).to_contain_text("register")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ui-dag-run-objects-in-airflow.png"))
    row.get_by_role("link").click()
    expect(page.get_by_test_id("run-metadata")).to_contain_text(run.id, timeout=30_000)
    assert "/plugin/ml_workspace#/workspaces/" in page.url
    page.go_back()
    page.locator("[data-testid=task-models] tr[data-model='ui-clf:1']").get_by_role("link").click()
    expect(page.get_by_test_id("lineage-run")).to_contain_text(run.id, timeout=30_000)
    assert page.url.endswith(f"#/workspaces/{WORKSPACE}/models/ui-clf/1")
