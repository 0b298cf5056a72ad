"""The runs table's paging and folding, the run page's downsampled chart and the compare page, in a
real browser against the standalone service with the sweep workspace of ``test_ui_browser``: the
table shows one page of top-level runs at a time (the service pages, sorts and filters), a parent's
children are fetched when it is unfolded, a long series is drawn from the service's downsampled
points (the chart says how many of how many), and picked runs are overlaid on a compare page whose
table marks the params that differ."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from airflow_aml.entities import Metric, RunStatus
from airflow_aml.workspace import Workspace
from tests.unit.service.test_ui_browser import STEPS, Demo, browser, demo, shot, signed_in, top_level_names

__all__ = ["browser", "demo"]  # the fixtures, shared with test_ui_browser

PAGE_SIZE = 50  # ui/src/pages/Runs.tsx
MANY = PAGE_SIZE + 7
LONG = 5_000
MAX_POINTS = 1000  # ui/src/pages/RunPage.tsx


def test_the_runs_table_shows_one_page_at_a_time(browser: Browser, demo: Demo) -> None:
    store = Workspace.get("demo", store_uri=demo.served.uri_for("alice")).store
    parent = store.create_run(workspace="demo", experiment="many", submitted_by="alice", display_name="run-000")
    for index in range(1, MANY):
        run = store.create_run(workspace="demo", experiment="many", submitted_by="alice",
                               display_name=f"run-{index:03d}", status=RunStatus.RUNNING)
        store.log_metric(run.run_id, Metric(name="acc", value=index / MANY, step=0, timestamp=1.0))
    for index in range(3):  # children are not top-level: they fold under run-000, on whatever page it is
        store.create_run(workspace="demo", experiment="many", submitted_by="alice", parent_run_id=parent.run_id,
                         display_name=f"child-{index}")
    page = signed_in(browser, demo, "alice")
    page.goto(demo.served.url + "/ui/#/workspaces/demo/experiments/many")
    first = top_level_names(page)
    assert len(first) == PAGE_SIZE and first[0] == f"run-{MANY - 1:03d}"  # newest first
    expect(page.get_by_test_id("page-number")).to_have_text("Page 1")
    expect(page.get_by_test_id("page-prev")).to_be_disabled()
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-number")).to_have_text("Page 2")
    second = top_level_names(page)
    assert second == [f"run-{index:03d}" for index in range(MANY - PAGE_SIZE - 1, -1, -1)]
    assert not set(first) & set(second)
    expect(page.get_by_test_id("page-next")).to_be_disabled()
    table = page.get_by_test_id("runs")
    row = table.locator(f"tr[data-run-id='{parent.run_id}']")
    expect(row.get_by_test_id("child-count")).to_have_text(" (3 child runs)")
    row.get_by_role("button", name="children").click()
    expect(table.locator("tr.aml-child")).to_have_count(3)
    row.get_by_role("button", name="children").click()
    expect(table.locator("tr.aml-child")).to_have_count(0)

    # sorted and filtered by the service: acc > 0.5, highest first, one page of them
    page.get_by_test_id("page-prev").click()
    page.get_by_test_id("sort-metric").click()
    expect(page.get_by_test_id("sort-metric")).to_contain_text("↓")
    assert top_level_names(page)[:2] == [f"run-{MANY - 1:03d}", f"run-{MANY - 2:03d}"]
    page.get_by_label("metric filter").fill("acc > 0.5")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("runs-view")).to_have_attribute("aria-busy", "false")
    expect(table.locator("tbody tr:not(.aml-child)")).to_have_count(len([i for i in range(1, MANY) if i / MANY > 0.5]))
    expect(page.get_by_test_id("page-next")).to_be_disabled()
    page.get_by_label("status").select_option("Completed")
    expect(page.get_by_text("No run matches.")).to_be_visible()  # every acc run is still Running
    page.close()


def test_a_long_series_is_drawn_downsampled_and_says_so(browser: Browser, demo: Demo) -> None:
    store = Workspace.get("demo", store_uri=demo.served.uri_for("alice")).store
    run = store.create_run(workspace="demo", experiment="long", submitted_by="alice", display_name="long")
    store.log_batch(run.run_id, [Metric(name="loss", value=1 / (step + 1) + (step % 7) / 100, step=step, timestamp=1.0)
                                 for step in range(LONG)])
    served = httpx.get(f"{demo.served.url}/api/v1/runs/{run.run_id}/metric-series",
                       params={"max_points": MAX_POINTS},
                       headers={"Authorization": f"Bearer {demo.served.token('alice')}"}).json()
    sent = len(served["series"][0]["steps"])
    assert sent <= MAX_POINTS and served["series"][0]["total_points"] == LONG
    page = signed_in(browser, demo, "alice")
    page.goto(f"{demo.served.url}/ui/#/workspaces/demo/runs/{run.run_id}")
    chart = page.locator("[data-testid=metric-chart][data-metric=loss]")
    expect(chart).to_have_attribute("data-points", str(sent))
    assert chart.evaluate("el => el.lastElementChild.uplot.data.map(series => series.length)") == [sent, sent]
    expect(chart.get_by_test_id("downsampled")).to_have_text(f" · {sent:,} of {LONG:,} points")
    page.goto(f"{demo.served.url}/ui/#/workspaces/demo/runs/{demo.parent_id}")  # 50 points: all of them
    accuracy = page.locator("[data-testid=metric-chart][data-metric=accuracy]")
    expect(accuracy).to_have_attribute("data-points", str(STEPS))
    expect(accuracy.get_by_test_id("downsampled")).to_have_count(0)
    page.close()


def test_picked_runs_are_compared(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "alice")
    page.goto(demo.served.url + "/ui/#/workspaces/demo/experiments/sweep")
    table = page.get_by_test_id("runs")
    table.locator(f"tr[data-run-id='{demo.parent_id}']").get_by_role("button", name="children").click()
    expect(table.locator("tr.aml-child")).to_have_count(4)
    page.get_by_label("select trial-0").check()
    page.get_by_label("select trial-2").check()
    shot(page, "ui-runs-paged")
    page.get_by_test_id("compare-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare 2 runs")
    assert f"runs={demo.child_ids[0]},{demo.child_ids[2]}" in page.url
    chart = page.locator("[data-testid=compare-chart][data-metric=loss]")
    expect(chart).to_have_attribute("data-points", f"{STEPS},{STEPS}")
    # what uPlot holds: the steps and one series per run, labelled by run
    assert chart.evaluate("el => el.lastElementChild.uplot.series.map(s => s.label)") == ["step", "trial-0", "trial-2"]
    assert chart.evaluate("el => el.lastElementChild.uplot.data.map(s => s.length)") == [STEPS] * 3
    lr = page.locator("[data-testid=compare-row][data-key='param:lr']")
    expect(lr).to_have_attribute("data-differs", "true")
    expect(lr).to_have_class("aml-diff")
    expect(lr.locator("td")).to_have_text(["0.1", "0.001"])
    loss = page.locator("[data-testid=compare-row][data-key='metric:loss']")
    expect(loss.locator("td")).to_have_text(["0.02", "0.06"])  # latest (i+1)/50
    shot(page, "ui-compare")
    page.close()
