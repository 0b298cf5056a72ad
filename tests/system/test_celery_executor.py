"""The train -> register -> image -> deploy -> score example DAG under Airflow's CeleryExecutor.

Airflow's own scale-out: scheduler, dag-processor, triggerer and api-server as separate processes,
two ``airflow celery worker`` processes (distinct names, concurrency 2 each), a real Redis broker
(``scripts/redis.sh``, ``AML_TEST_REDIS_URL``), Airflow's metadata database *and* Celery's result
backend on a fresh PostgreSQL database (``scripts/services.sh``, ``AML_TEST_POSTGRES_URI``), and the
workspace served by the service (every task reaches it over HTTP with a personal access token).

Both workers run on this one machine, so the machine's name cannot tell them apart: each worker's
task processes report ``AML_WORKER_NAME`` as their hostname (``[core] hostname_callable``), which is
what the task instances then record.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import DeploymentState, ImageStatus, RunStatus
from airflow_aml.workspace import Workspace
from tests.system.airflow_processes import AirflowProcesses
from tests.unit.service.served import Served, serve

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
DAG_ID = "aml_train_register_deploy"
WORKERS = ("aml-worker-a", "aml-worker-b")
RUN_TIMEOUT = 300
HOSTNAME_MODULE = 'import os\n\ndef hostname():\n    return os.environ["AML_WORKER_NAME"]\n'
POLICY = """
def task_policy(task):
    task.retries = 0  # every task must succeed on its first try
"""


def _env_uri(name: str) -> str:
    value = os.environ.get(name)
    assert value, f"{name} is unset: run through scripts/test.sh (it starts the service)"
    return value


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for Airflow's metadata (dropped afterwards)."""
    admin_uri = _env_uri("AML_TEST_POSTGRES_URI")
    name = f"airflow_celery_{secrets.token_hex(4)}"
    plain = admin_uri.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_uri.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    # The service (in this process) and the tasks share one AML_HOME: the deployment the DAG starts
    # is a local process the service must find to stop it in teardown.
    monkeypatch.setenv("AML_HOME", str(tmp_path / "aml"))
    monkeypatch.setenv("AML_PROGRESS", "0")
    for name in ("AML_STORE_URI", "AML_PRINCIPAL", "AML_TOKEN", "AML_RUN_TOKEN", "AIRFLOW_CONN_AML_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


@pytest.fixture
def airflow(tmp_path: Path, database: str, served: Served) -> Iterator[tuple[AirflowProcesses, Workspace]]:
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    (home / "config" / "airflow_local_settings.py").write_text(POLICY)
    pythonpath = tmp_path / "pythonpath"
    pythonpath.mkdir()
    (pythonpath / "aml_worker_hostname.py").write_text(HOSTNAME_MODULE)
    dags = home / "dags"
    dags.mkdir()
    for entry in EXAMPLES.iterdir():
        if entry.name != "__pycache__":
            (dags / entry.name).symlink_to(entry)
    token = served.token("alice")
    ws = Workspace.create("demo", store_uri=served.url.replace("http://", f"http://:{token}@"))
    processes = AirflowProcesses(
        home,
        dags_folder=dags,
        executor="CeleryExecutor",
        database_uri=database,
        env={
            "AML_HOME": str(tmp_path / "aml"),
            "AML_PROGRESS": "0",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
            "AIRFLOW__CELERY__BROKER_URL": _env_uri("AML_TEST_REDIS_URL"),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database,
            # Airflow derives asyncpg for its async engine from a postgresql URI; psycopg (v3) is installed.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database.replace("+psycopg://", "+psycopg_async://"),
            "AIRFLOW_CONN_AML_WORKSPACE": json.dumps(
                {"conn_type": "aml_workspace", "host": served.url, "schema": "demo", "password": token}
            ),
        },
    )
    try:
        processes.airflow("db", "migrate")
        processes.start()
        for name in WORKERS:
            processes.start_celery_worker(
                name,
                concurrency=2,
                env={
                    "AML_WORKER_NAME": name,
                    "PYTHONPATH": str(pythonpath),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "aml_worker_hostname.hostname",
                },
            )
        processes.wait_for_dags([DAG_ID])
        processes.unpause(DAG_ID)
        yield processes, ws
    finally:
        processes.stop()
        for deployment in ws.list_deployments():
            Deployment.delete_if_exists(ws, deployment.name, timeout=120)


@pytest.mark.timeout(480)
def test_example_dag_under_the_celery_executor(airflow: tuple[AirflowProcesses, Workspace]) -> None:
    processes, ws = airflow
    # Three child runs: enough tasks/work for both workers to pick some up.
    conf = {
        "aml_conn_id": "aml_workspace",
        "experiment": "iris",
        "grid_C": [0.1, 1.0, 10.0],
        "model_name": "iris",
        "image_name": "iris-scorer",
        "deployment_name": "celery-service",
    }
    started = time.monotonic()
    run_id = processes.trigger(DAG_ID, conf, run_id="celery-1")
    states = processes.wait_for_runs([(DAG_ID, run_id)], timeout=RUN_TIMEOUT)
    seconds = time.monotonic() - started
    tis = processes.task_instances(DAG_ID, run_id)
    bad = {
        ti["task_id"]: (ti["state"], processes.task_log(DAG_ID, run_id, ti["task_id"])[-2000:])
        for ti in tis
        if ti["state"] != "success"
    }
    assert states[(DAG_ID, run_id)] == "success" and not bad, f"{states} {bad}"
    hosts = {ti["task_id"]: ti["hostname"] for ti in tis}
    assert set(hosts.values()) == set(WORKERS), hosts
    print(f"\nCeleryExecutor DAG run: {seconds:.1f} s, tasks by worker: {hosts}")

    [sweep] = ws.experiment("iris").get_runs()
    assert sweep.status is RunStatus.COMPLETED
    assert sorted(float(c.record.params["C"]) for c in sweep.get_children()) == [0.1, 1.0, 10.0]
    [model] = ws.list_models(name="iris")
    [image] = ws.list_images(name="iris-scorer")
    assert image.status is ImageStatus.SUCCEEDED and image.model_ids == [model.id]
    service = ws.get_deployment("celery-service")
    assert service.state is DeploymentState.HEALTHY and service.image_id == image.id
    assert service.run({"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})["predictions"] == [0, 2]
