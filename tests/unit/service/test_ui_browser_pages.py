"""The workspace UI's lineage, images and activities pages in a real browser, against the
standalone service with the sweep workspace of ``test_ui_browser``: a model version's lineage
(run -> model -> image), the refused delete of a version an image packages (the service's reason
shown), a Reader offered no delete button, and the activities list with its progress bars."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from airflow_aml.entities import ActivityStatus
from airflow_aml.workspace import Workspace
from tests.unit.service.test_ui_browser import Demo, browser, demo, shot, signed_in

__all__ = ["browser", "demo"]  # the fixtures, shared with test_ui_browser


def test_lineage_links_and_the_refused_delete(browser: Browser, demo: Demo) -> None:
    ws = Workspace.get("demo", store_uri=demo.served.uri_for("alice"))
    # An image record packaging classifier:2 (its build is not this test's subject).
    ws.store.create_image_version("demo", "scorer", builder="local", created_by="alice",
                                  model_ids=["classifier:2"], spec={})
    page = signed_in(browser, demo, "alice")
    page.goto(demo.served.url + "/ui/#/workspaces/demo/models")
    row = page.get_by_test_id("models").locator("tr[data-model='classifier:2']")
    row.get_by_role("link", name="2", exact=True).click()
    lineage = page.get_by_test_id("lineage")
    expect(page.get_by_test_id("lineage-images")).to_contain_text("scorer:1")
    expect(page.get_by_test_id("lineage-deployments")).to_contain_text("none")
    page.get_by_test_id("delete-version").click()
    expect(page.get_by_test_id("delete-refused")).to_contain_text("used by an image")
    expect(page.get_by_test_id("delete-refused")).to_contain_text("scorer")
    shot(page, "ui-model-lineage")
    lineage.get_by_test_id("lineage-run").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("trial-0")
    page.go_back()
    page.get_by_test_id("lineage-images").get_by_role("link", name="scorer:1").click()
    expect(page.get_by_test_id("images").locator("tr[data-image='scorer:1']")).to_contain_text("classifier:2")
    shot(page, "ui-images")
    page.close()

    reader = signed_in(browser, demo, "bob")
    reader.goto(demo.served.url + "/ui/#/workspaces/demo/models/classifier/2")
    expect(reader.get_by_test_id("lineage-images")).to_contain_text("scorer:1")
    assert reader.get_by_test_id("delete-version").count() == 0  # a Reader gets no write button
    reader.close()


def test_activities_show_progress_running_first(browser: Browser, demo: Demo) -> None:
    ws = Workspace.get("demo", store_uri=demo.served.uri_for("alice"))
    done = ws.store.create_activity("demo", kind="image_build", target_id="done:1")
    ws.store.update_activity(done.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0, message="built")
    running = ws.store.create_activity("demo", kind="image_build", target_id="busy:1")
    ws.store.update_activity(running.activity_id, status=ActivityStatus.RUNNING, progress=0.25, message="installing")
    page = signed_in(browser, demo, "bob")
    page.goto(demo.served.url + "/ui/#/workspaces/demo/activities")
    first = page.get_by_test_id("activities").locator("tbody tr").first
    expect(first).to_have_attribute("data-activity", running.activity_id)
    expect(first.get_by_test_id("progress")).to_have_attribute("data-progress", "0.25")
    # The page polls while one runs: its progress moves without a reload.
    ws.store.update_activity(running.activity_id, progress=0.75, message="almost")
    expect(first.get_by_test_id("progress")).to_have_attribute("data-progress", "0.75", timeout=10_000)
    expect(first).to_contain_text("almost")
    shot(page, "ui-activities")
    page.close()
