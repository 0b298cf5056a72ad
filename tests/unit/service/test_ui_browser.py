"""The workspace UI in a real browser (Playwright driving Debian's chromium) against the standalone
service: sign in with a personal access token, then workspaces -> experiments -> runs table (child
runs folded under their parent, sorted by a metric on the service) -> run page (a chart of 50
points) and the models list. With AML_UPDATE_SCREENSHOTS=1 it saves the pages' screenshots under
docs/screenshots/ (the README shows them)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from airflow_aml.entities import Role
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve

ROOT = Path(__file__).resolve().parents[3]
# The README's screenshots are rewritten only when asked (AML_UPDATE_SCREENSHOTS=1): a test run
# must not leave the working tree modified. Otherwise they go to a temporary folder.
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("AML_UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.mkdtemp(prefix="aml-screenshots-")))
CHROMIUM = os.environ.get("AML_TEST_CHROMIUM", "/usr/bin/chromium")
STEPS = 50


@dataclass
class Demo:
    served: Served
    parent_id: str
    child_ids: list[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A workspace with a sweep (a parent and 4 children, metrics over 50 steps), two baseline
    runs and a registered model; alice owns it, bob reads it, carol has no role."""
    home = tmp_path_factory.mktemp("aml-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AML_HOME", str(home))
        env.setenv("AML_PROGRESS", "0")
        env.delenv("AML_STORE_URI", raising=False)
        with serve(f"sqlite:///{home / 'aml.db'}") as served:
            ws = Workspace.create("demo", store_uri=served.uri_for("alice"))
            ws.assign_role("bob", Role.READER)
            experiment = ws.experiment("sweep")

            def baseline(name: str, loss: float) -> None:
                run = experiment.start_logging(display_name=name)
                run.log("loss", loss)
                run.flush()
                run.complete()

            # Created apart, so that newest-first, loss-descending and loss-ascending orders all differ.
            baseline("baseline-a", 0.3)
            parent = experiment.start_logging(display_name="sweep-parent", tags={"kind": "sweep"})
            parent.log_param("search", "grid")
            for step in range(STEPS):
                parent.log("accuracy", 0.5 + step / 100, step=step)
            model_file = home / "model.pkl"
            model_file.write_bytes(b"not really a model")
            children = []
            for index in range(4):
                child = parent.child_run(f"trial-{index}")
                child.log_param("lr", 10.0 ** -(index + 1))
                for step in range(STEPS):
                    child.log("loss", (index + 1) / (step + 1), step=step)
                child.upload_file("outputs/model.pkl", model_file)
                child.flush()
                child.complete()
                children.append(child)
            ws.store.append_log(parent.id, "stdout", "trial 0..3 started\nbest trial: trial-0\n")
            parent.flush()
            parent.complete()
            baseline("baseline-b", 0.7)
            ws.register_model("classifier", path=model_file, tags={"stage": "dev"})
            # Version 2 from the best trial's outputs: the models list links back to that run.
            ws.register_model("classifier", run_id=children[0].id, run_path="outputs/model.pkl", tags={"stage": "prod"})
            yield Demo(served=served, parent_id=parent.id, child_ids=[child.id for child in children])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


def signed_in(browser: Browser, demo: Demo, principal: str) -> Page:
    """A fresh tab at /ui/, signed in by pasting a personal access token into the page's form."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(demo.served.url + "/ui/")
    form = page.get_by_test_id("token-form")
    expect(form).to_be_visible()
    form.get_by_label("token").fill(demo.served.token(principal))
    form.get_by_role("button", name="Open").click()
    expect(page.get_by_test_id("principal")).to_contain_text(principal)
    return page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def top_level_names(page: Page) -> list[str]:
    expect(page.get_by_test_id("runs-view")).to_have_attribute("aria-busy", "false")
    rows = page.locator("[data-testid=runs] tbody tr:not(.aml-child) td:first-child a")
    return rows.all_inner_texts()


def test_a_wrong_token_is_refused_and_asked_for_again(browser: Browser, demo: Demo) -> None:
    page = browser.new_page()
    page.goto(demo.served.url + "/ui/")
    page.get_by_label("token").fill("aml_pat_not-a-token")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    page.close()


def test_runs_table_folds_children_and_sorts_on_the_service(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "alice")
    expect(page.get_by_test_id("workspaces")).to_contain_text("demo")
    shot(page, "ui-workspaces")
    page.get_by_role("link", name="demo").click()
    page.get_by_role("link", name="sweep").click()
    table = page.get_by_test_id("runs")
    expect(table).to_be_visible()
    assert top_level_names(page) == ["baseline-b", "sweep-parent", "baseline-a"]  # newest first
    parent_row = table.locator(f"tr[data-run-id='{demo.parent_id}']")
    expect(parent_row).to_contain_text("4 child runs")
    expect(parent_row).to_contain_text("Completed")
    expect(parent_row).to_contain_text("alice")
    assert table.locator("tr.aml-child").count() == 0  # folded
    parent_row.get_by_role("button", name="children").click()
    expect(table.locator("tr.aml-child")).to_have_count(4)

    page.get_by_test_id("metric-choice").select_option("loss")
    page.get_by_test_id("sort-metric").click()  # descending by the latest loss; runs without it last
    expect(page.get_by_test_id("sort-metric")).to_contain_text("↓")
    assert top_level_names(page) == ["baseline-b", "baseline-a", "sweep-parent"]
    # the unfolded parent's children are fetched again in the new order (retried until they are)
    expect(table.locator("tr.aml-child td:first-child a")).to_have_text(
        ["trial-3", "trial-2", "trial-1", "trial-0"])  # latest loss (i+1)/50, descending
    expect(table.locator(f"tr[data-run-id='{demo.child_ids[3]}'] td[data-metric=loss]")).to_have_text("0.08")
    page.get_by_test_id("sort-metric").click()
    expect(page.get_by_test_id("sort-metric")).to_contain_text("↑")
    assert top_level_names(page) == ["baseline-a", "baseline-b", "sweep-parent"]
    shot(page, "ui-runs")
    page.close()


def test_run_page_shows_metadata_params_charts_children_and_log(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "alice")
    page.goto(f"{demo.served.url}/ui/#/workspaces/demo/runs/{demo.parent_id}")
    expect(page.get_by_test_id("run-metadata")).to_contain_text(demo.parent_id)
    expect(page.get_by_test_id("run-metadata")).to_contain_text("kind: sweep")
    expect(page.get_by_test_id("params")).to_contain_text("grid")
    chart = page.locator("[data-testid=metric-chart][data-metric=accuracy]")
    expect(chart).to_have_attribute("data-points", str(STEPS))
    # What uPlot itself holds: 50 steps and 50 values, and it drew them onto a canvas.
    plotted = chart.evaluate("el => el.lastElementChild.uplot.data.map(series => series.length)")
    assert plotted == [STEPS, STEPS]
    assert chart.locator("canvas").count() == 1
    expect(page.get_by_test_id("child-runs").locator("tbody tr")).to_have_count(4)
    expect(page.get_by_test_id("run-log")).to_contain_text("best trial: trial-0")
    shot(page, "ui-run")

    page.get_by_test_id("child-runs").get_by_role("link", name="trial-1").click()
    loss = page.locator("[data-testid=metric-chart][data-metric=loss]")
    expect(loss).to_have_attribute("data-points", str(STEPS))
    expect(page.get_by_test_id("params")).to_contain_text("0.01")
    page.close()


def test_models_list_shows_every_version(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "bob")  # a Reader sees the registry
    page.goto(demo.served.url + "/ui/#/workspaces/demo/models")
    models = page.get_by_test_id("models")
    expect(models.locator("tr[data-model='classifier:2']")).to_contain_text("stage: prod")
    expect(models.locator("tr[data-model='classifier:1']")).to_contain_text("stage: dev")
    expect(models.locator("tbody tr")).to_have_count(2)
    # its lineage: the run (the row's other link, the version, opens the lineage page)
    models.locator("tr[data-model='classifier:2']").get_by_role("link", name=demo.child_ids[0][:8]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("trial-0")
    assert page.locator(".aml-ui button.aml-button").count() == 0  # no write buttons for a Reader
    page.go_back()
    expect(models).to_be_visible()
    shot(page, "ui-models")
    page.close()


def test_a_principal_without_a_role_sees_no_workspace(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "carol")
    expect(page.get_by_text("You have a role on no workspace.")).to_be_visible()
    page.goto(demo.served.url + "/ui/#/workspaces/demo/experiments/sweep")
    expect(page.get_by_role("alert")).to_be_visible()  # the service refuses; the page shows why
    page.close()
