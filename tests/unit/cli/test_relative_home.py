"""The CLI as the README types it: the installed ``airflow-aml`` script, a relative ``AML_HOME``.

``AML_HOME=.demo/airflow/aml airflow-aml ...`` used to break everything that runs detached: the
run supervisor and the deployment supervisor start in folders of their own and resolved the
relative home again from there (``run submit --wait`` hung forever, ``deployments deploy`` failed
with a doubled path). The home is now resolved once and handed on absolute.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from airflow_aml.workspace import Workspace

CLI = Path(sys.executable).with_name("airflow-aml")
TIMEOUT = 240


@pytest.fixture
def relative_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A relative AML_HOME under ``tmp_path``, which is the working folder (of this process too).

    Unique per test: a process resolves a relative home once, against the folder it was in then.
    """
    home = f".demo-{uuid.uuid4().hex[:8]}/aml"
    monkeypatch.chdir(tmp_path)
    for name in ("AML_STORE_URI", "AML_WORKSPACE", "AML_SECRET_KEY", "AML_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AML_HOME", home)
    monkeypatch.setenv("AML_PRINCIPAL", "alice")
    monkeypatch.setenv("AML_PROGRESS", "0")
    return home


def cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``airflow-aml ARGS`` in its own process, from the current folder, with this environment."""
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_run_submit_wait_with_a_relative_home(relative_home: str, tmp_path: Path) -> None:
    ok(cli("workspace", "create", "ws"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        "from airflow_aml.runtime import Run\nrun = Run.get_context()\nrun.log('accuracy', 0.93)\nprint('trained')\n"
    )
    result = ok(cli("-w", "ws", "run", "submit", "src", "--script", "train.py", "--wait", "--timeout", "180"))
    run_id = result.stdout.split()[0]
    assert "trained" in result.stdout and f"Run {run_id} Completed" in result.stderr
    # Everything is under the one home, resolved against the folder the command was typed in.
    home = tmp_path / relative_home
    assert (home / "aml.db").is_file()
    assert (home / "runs" / run_id / "driver_log.txt").read_text().strip().endswith("trained")
    assert not list((home / "runs" / run_id).rglob(".demo-*"))  # no home nested in a run folder
    metrics = json.loads(ok(cli("-w", "ws", "--json", "run", "metrics", run_id)).stdout)
    assert metrics == {"accuracy": 0.93}


def test_a_failing_script_ends_the_wait_with_exit_1(relative_home: str, tmp_path: Path) -> None:
    ok(cli("workspace", "create", "ws"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "fail.py").write_text("raise SystemExit('no data')\n")
    result = cli("-w", "ws", "run", "submit", "src", "--script", "fail.py", "--wait", "--timeout", "180")
    assert result.returncode == 1, result.stderr
    assert "ended Failed" in result.stderr and "no data" in result.stderr


def test_deploy_with_a_relative_home(relative_home: str, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from airflow_aml.images import ImageSpec

    ok(cli("workspace", "create", "ws"))
    ws = Workspace.get("ws")  # this process resolves the same relative home to the same folder
    assert ws.store_uri == f"sqlite:///{tmp_path / relative_home / 'aml.db'}"
    features, target = load_iris(return_X_y=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(features, target)))
    ws.register_model("iris", path="model")  # a relative path, as a user types it
    image = ws.create_image("iris-img", ImageSpec(models=["iris"], builtin_scorer="sklearn"))
    try:
        result = ok(cli("-w", "ws", "deployments", "deploy", "svc", "--image", image.id, "--timeout", "180"))
        assert "svc" in result.stdout + result.stderr
        service = ws.get_deployment("svc")
        assert service.state.value == "Healthy", service.error
        assert str(service.folder).startswith(str(tmp_path / relative_home))
        answer = httpx.post(
            service.scoring_uri or "",
            json={"data": [[5.1, 3.5, 1.4, 0.2]]},
            headers={"Authorization": f"Bearer {service.get_keys()[0]}"},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["predictions"] == [0]
    finally:
        cli("-w", "ws", "deployments", "delete", "svc", "--timeout", "120")
    assert not ws.list_deployments()


def test_the_home_is_resolved_once(relative_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_aml import config

    first = config.aml_home()
    assert first.is_absolute() and first == tmp_path / relative_home
    monkeypatch.chdir(tmp_path / "..")
    assert config.aml_home() == first  # not re-resolved against the new working folder
    assert os.path.isabs(config.default_store_uri().removeprefix("sqlite:///"))
