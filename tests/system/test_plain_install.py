"""``pip install airflow-aml`` as providers are usually installed: no lock file, whatever pip resolves
from the declared ranges (the floor of apache-airflow included), then a one-task DAG on it.

A floor that no longer works (``apache-airflow>=3.1`` resolved 3.2.2, whose tasks all fail with
pydantic 2.14) fails here, not in a user's first DAG run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from airflow_aml.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]

DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG

    from airflow_aml.operators.run import AmlSubmitRunOperator

    with DAG("aml_plain_install", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        AmlSubmitRunOperator(task_id="train", experiment_name="plain", source_directory="{source}",
                             script="train.py", arguments=["--lr", "0.1"], deferrable=False, poll_interval=1)
    """
)
SCRIPT = textwrap.dedent(
    """
    import sys
    from airflow_aml.runtime import Run

    run = Run.get_context()
    run.log("lr", float(sys.argv[2]))
    print("trained on a plain install")
    """
)


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    shown = f"{' '.join(cmd)}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, shown
    return result


def test_a_plain_pip_install_runs_a_dag(tmp_path: Path, monkeypatch) -> None:
    venv = tmp_path / "venv"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AML_", "VIRTUAL_ENV"))}
    _run([sys.executable, "-m", "venv", str(venv)], base, 120)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)], base, 1500)
    _run([str(python), "-m", "pip", "check"], base, 120)
    versions = _run([str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
                    base, 60).stdout.strip()
    assert tuple(int(p) for p in versions.split(".")[:3]) >= (3, 3, 2), versions

    source, dags = tmp_path / "src", tmp_path / "dags"
    source.mkdir()
    dags.mkdir()
    (source / "train.py").write_text(SCRIPT)
    (dags / "plain.py").write_text(DAG.format(source=source))
    env = {
        **base, "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AML_HOME": str(tmp_path / "aml"), "AML_PROGRESS": "0",
    }
    _run([str(bin_dir / "airflow-aml"), "--help"], env, 60)
    _run([str(bin_dir / "airflow"), "db", "migrate"], env, 300)
    dag_test = _run([str(bin_dir / "airflow"), "dags", "test", "aml_plain_install"], env, 600)
    assert "state=success" in dag_test.stdout + dag_test.stderr

    monkeypatch.setenv("AML_HOME", str(tmp_path / "aml"))
    [run] = Workspace.get("default").experiment("plain").get_runs()
    assert run.get_metrics() == {"lr": 0.1} and "trained on a plain install" in run.get_log_text()
