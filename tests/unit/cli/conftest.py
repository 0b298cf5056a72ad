"""What every CLI test shares: the CLI driven through typer's CliRunner on a temporary SQLite store,
workspace ``ws`` created through the CLI itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from airflow_aml.cli import app
from airflow_aml.workspace import Workspace
from tests.unit.cli.helpers import WS, Invoke


@pytest.fixture
def invoke(aml_home: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run the CLI against the test store and workspace ``ws``; global options come first."""
    for name in ("AML_WORKSPACE", "AML_DEBUG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, workspace: str = WS, global_args: tuple[str, ...] = ()) -> Result:
        return runner.invoke(app, ["--store-uri", store_uri, "-w", workspace, *global_args, *args], input=input)

    return run


@pytest.fixture
def ws(invoke: Invoke, store_uri: str, tmp_path: Path) -> Workspace:
    result = invoke("workspace", "create", WS, "--datastore-root", str(tmp_path / "datastore"))
    assert result.exit_code == 0, result.output
    return Workspace.get(WS, store_uri=store_uri)
