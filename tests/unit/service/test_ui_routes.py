"""The workspace UI's static files: served at /ui/ without a token (they hold no data), the API
behind them still closed; a package built without the bundle says how to build it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_aml.service import ui_routes
from airflow_aml.service.app import create_app

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def anonymous(aml_home: Path, store_uri: str) -> Iterator[TestClient]:
    with TestClient(create_app(store_uri), raise_server_exceptions=False) as client:
        yield client


def test_the_page_and_its_bundle_are_served_without_a_token(anonymous: TestClient) -> None:
    page = anonymous.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="./aml-ui.js"' in page.text and 'id="aml-root"' in page.text
    bundle = anonymous.get("/ui/aml-ui.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    # The bundle finds the API next to its folder and registers the component Airflow renders.
    assert "../api/v1/" in bundle.text and "AirflowPlugin" in bundle.text
    assert anonymous.get("/api/v1/workspaces").status_code == 401  # the data stays behind the token


def test_the_files_are_revalidated_and_locked_to_their_origin(anonymous: TestClient) -> None:
    page = anonymous.get("/ui/")
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy


def test_ui_without_slash_redirects_relative_to_any_mount(anonymous: TestClient) -> None:
    answer = anonymous.get("/ui", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "ui/"


def test_an_unknown_file_is_404(anonymous: TestClient) -> None:
    assert anonymous.get("/ui/missing.js").status_code == 404


def test_a_missing_bundle_names_the_build_step(tmp_path: Path) -> None:
    app = FastAPI()
    app.router.routes.extend(ui_routes.ui_routes(tmp_path))
    answer = TestClient(app).get("/ui/")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NotFoundError"
    assert "npm ci && npm run build" in answer.json()["error"]["message"]


def test_the_wheel_ships_the_bundle_the_git_tree_ignores() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "airflow_aml/service/ui_static/*" in wheel["artifacts"]
    assert wheel["hooks"]["custom"]["path"] == "scripts/hatch_build.py"
    assert "/airflow_aml/service/ui_static/" in (ROOT / ".gitignore").read_text().splitlines()
    assert (ROOT / "ui" / "package-lock.json").is_file()
