"""The README's first steps as a newcomer types them: the main job, then its Command line block.

``scripts/main.sh`` runs for real (``uv sync``, the example DAG with ``airflow dags test``, the
image, the web service, one scored request with curl), its state in a throw-away ``.demo`` (it
honours ``$AIRFLOW_HOME``/``$AML_HOME``); then every line of the README's "Command line" block
runs, unchanged, as one bash script from the folder holding that ``.demo``, with the relative
``AML_HOME`` the block exports. A README example that drifts from what the main job makes (an
experiment renamed, a flag renamed) fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SECRET_VALUE = "s3cret-never-printed-7f1c"


def readme_block(heading: str) -> str:
    """The first ```bash block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no bash block under {heading!r}"
    return match.group(1)


@pytest.fixture
def clone_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder standing for the clone in the block's eyes (the DAG folder it names, the venv) with
    a fresh ``.demo``; the web service the main job starts is deleted at the end whatever happens."""
    (tmp_path / "dags_examples").symlink_to(REPO / "dags_examples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    for name in ("AML_STORE_URI", "AML_WORKSPACE", "AML_PRINCIPAL", "AML_DEBUG", "AIRFLOW_CONN_AML_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AML_PROGRESS", "0")
    yield tmp_path
    home = tmp_path / ".demo" / "airflow" / "aml"
    monkeypatch.setenv("AML_HOME", str(home))
    if (home / "aml.db").exists() and Workspace.list():
        Deployment.delete_if_exists(Workspace.get("default"), "iris-service", timeout=120)


def _bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def test_main_job_then_every_command_line_example(clone_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_HOME", "AML_HOME")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    demo = clone_folder / ".demo" / "airflow"

    # From the clone, as README says, with the state under the throw-away folder.
    main_env = {**env, "AIRFLOW_HOME": str(demo), "AML_HOME": str(demo / "aml")}
    main = _bash("bash scripts/main.sh", REPO, main_env, timeout=600)
    assert main.returncode == 0, f"stdout:\n{main.stdout}\nstderr:\n{main.stderr}"
    assert '{"predictions":[0]' in main.stdout  # the curl request of the main job
    for line in main.stdout.splitlines():  # the summary reads in a log: nothing wrapped at 80 columns
        if line.startswith(("Registered model", "Web service")):
            assert line.rstrip().endswith(("]", "iris-scorer:1")), line

    block = readme_block("## Command line")
    result = _bash(block, clone_folder, {**env, "DB_PASSWORD": SECRET_VALUE}, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the README's Command line block failed:\n{output}"
    assert SECRET_VALUE not in output

    monkeypatch.setenv("AML_HOME", str(demo / "aml"))
    ws = Workspace.get("default")
    top_level = ws.experiment("iris-train").search_runs(include_children=False)
    assert len(top_level) == 2  # the main job's sweep and the README's run submit
    [sweep] = [run for run in top_level if run.get_children()]
    children = {c.id for c in sweep.get_children()}
    listed = [line for line in result.stdout.splitlines() if any(child in line for child in children)]
    assert listed, "run list --include-children printed no child run of the sweep"
    models = ws.list_models(name="iris-classifier")
    assert [m.version for m in models] == [2, 1] and models[0].tags == {"stage": "manual"}
    assert "db-password" in ws.list_secrets()
    assert ws.get_default_datastore().exists("datasets/iris/train.py")
    assert not ws.list_deployments()  # the block's last line deleted the service
