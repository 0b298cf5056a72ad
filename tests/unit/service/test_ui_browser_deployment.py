"""The deployments page in chromium with a real local deployment of a served workspace: state,
replicas, scoring URI, the telemetry of requests just scored, recent logs; a Reader sees no key
and no button, an Owner reveals the keys and regenerates the primary one (the old one is then
refused by the deployment itself)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from airflow_aml.deployments import Deployment
from airflow_aml.images import ImageSpec
from airflow_aml.workspace import Workspace
from tests.unit.deployments.conftest import SCORE_PY
from tests.unit.service.test_ui_browser import Demo, browser, demo, shot, signed_in

__all__ = ["browser", "demo"]
REQUESTS = 3


@pytest.fixture(scope="module")
def deployed(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    ws = Workspace.get("demo", store_uri=demo.served.uri_for("alice"))
    source: Path = tmp_path_factory.mktemp("scorer")
    (source / "score.py").write_text(SCORE_PY)
    (source / "version.txt").write_text("1\n")
    image = ws.create_image("echo", ImageSpec(models=["classifier:1"], source_directory=str(source),
                                              entry_script="score.py"))
    deployment = Deployment.create(ws, "echo-svc", image)
    try:
        yield deployment
    finally:
        deployment.delete(timeout=60)


def test_deployment_page_keys_telemetry_and_logs(browser: Browser, demo: Demo, deployed: Deployment) -> None:
    key = deployed.get_keys()[0]
    for _ in range(REQUESTS):
        assert httpx.post(deployed.scoring_uri or "", json={"echo": 1}, timeout=10,
                          headers={"Authorization": f"Bearer {key}"}).status_code == 200
    deadline = time.monotonic() + 40  # the supervisor sums telemetry every 10 s
    while time.monotonic() < deadline and deployed.get_telemetry().get("requests", 0) < REQUESTS:
        time.sleep(1)
    assert deployed.get_telemetry()["requests"] == REQUESTS

    reader = signed_in(browser, demo, "bob")
    reader.goto(demo.served.url + "/ui/#/workspaces/demo/deployments")
    reader.get_by_test_id("deployments").get_by_role("link", name="echo-svc").click()
    expect(reader.get_by_test_id("deployment-state")).to_have_text("Healthy")
    expect(reader.get_by_test_id("scoring-uri")).to_have_text(deployed.scoring_uri or "")
    expect(reader.get_by_test_id("telemetry")).to_contain_text(str(REQUESTS))
    assert reader.get_by_test_id("keys").count() == 0 and reader.locator("button.aml-button").count() == 0
    assert key not in reader.content()
    reader.close()

    owner = signed_in(browser, demo, "alice")
    owner.goto(demo.served.url + "/ui/#/workspaces/demo/deployments/echo-svc")
    expect(owner.get_by_test_id("replicas")).to_contain_text("1 ready")
    expect(owner.get_by_test_id("deployment-log")).to_contain_text("replica")
    expect(owner.get_by_text("Keys hidden.")).to_be_visible()
    shot(owner, "ui-deployment")  # before the keys are shown: no key in the README's picture
    owner.get_by_test_id("show-keys").click()
    expect(owner.get_by_test_id("primary-key")).to_have_text(key)
    owner.get_by_test_id("regenerate-key").click()
    expect(owner.get_by_test_id("primary-key")).not_to_have_text(key, timeout=20_000)
    fresh = owner.get_by_test_id("primary-key").inner_text()
    assert httpx.post(deployed.scoring_uri or "", json={"echo": 1}, timeout=10,
                      headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert httpx.post(deployed.scoring_uri or "", json={"echo": 1}, timeout=10,
                      headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    owner.close()
