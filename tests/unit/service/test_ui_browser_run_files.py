"""The run page's Files and Snapshot sections in a real browser, against the standalone service
with the sweep workspace of ``test_ui_browser``: a trial's outputs/model.pkl downloaded through
the page (a bearer token standalone, so fetched as a blob), the snapshot of a run shown as a tree
whose folders open and close, one of its files and the whole zip downloaded."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from playwright.sync_api import Browser, expect

from airflow_aml.workspace import Workspace
from tests.unit.service.test_ui_browser import Demo, browser, demo, shot, signed_in

__all__ = ["browser", "demo"]  # the fixtures, shared with test_ui_browser


def test_a_run_file_downloads_from_the_files_section(browser: Browser, demo: Demo) -> None:
    page = signed_in(browser, demo, "bob")  # a Reader may download a run's files
    page.goto(f"{demo.served.url}/ui/#/workspaces/demo/runs/{demo.child_ids[0]}")
    files = page.get_by_test_id("run-files")
    expect(files.locator("tr[data-file='outputs/model.pkl']")).to_contain_text("18 B")
    with page.expect_download() as download:
        files.get_by_role("button", name="download outputs/model.pkl").click()
    assert download.value.suggested_filename == "model.pkl"
    assert Path(download.value.path()).read_bytes() == b"not really a model"
    expect(page.get_by_text("No snapshot.")).to_be_visible()  # the trials were logged, not submitted
    page.close()


def test_the_snapshot_tree_and_its_downloads(browser: Browser, demo: Demo, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg" / "nested").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "pkg" / "util.py").write_text("HELPER = 1\n")
    (source / "pkg" / "nested" / "deep.txt").write_text("deep\n")
    ws = Workspace.get("demo", store_uri=demo.served.uri_for("alice"))
    run = ws.experiment("sweep").start_logging(display_name="with-snapshot")
    sha256 = run.take_snapshot(source)
    run.upload_bytes("logs/driver.txt", b"driver log\n")
    run.complete()

    page = signed_in(browser, demo, "bob")
    page.goto(f"{demo.served.url}/ui/#/workspaces/demo/runs/{run.id}")
    snapshot = page.get_by_test_id("snapshot")
    expect(snapshot).to_contain_text("3 files")
    expect(snapshot).to_contain_text(f"SHA-256 {sha256[:12]}")
    expect(snapshot.locator("li[data-entry='train.py']")).to_be_visible()
    deep = snapshot.locator("li[data-entry='pkg/nested/deep.txt']")
    expect(deep).to_have_count(0)  # folders start closed
    snapshot.get_by_role("button", name="pkg/").click()
    snapshot.get_by_role("button", name="nested/").click()
    expect(deep).to_contain_text("5 B")
    expect(page.get_by_test_id("run-files").locator("tr[data-file='logs/driver.txt']")).to_be_visible()
    shot(page, "ui-run-files")

    with page.expect_download() as one:
        deep.get_by_role("button").click()
    assert Path(one.value.path()).read_text() == "deep\n"
    with page.expect_download() as whole:
        snapshot.get_by_role("button", name="download snapshot.zip").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(whole.value.path()).read_bytes()))
    assert archive.namelist() == ["pkg/nested/deep.txt", "pkg/util.py", "train.py"]
    snapshot.get_by_role("button", name="pkg/").click()  # closes again
    expect(snapshot.locator("li[data-entry='pkg/util.py']")).to_have_count(0)
    page.close()
