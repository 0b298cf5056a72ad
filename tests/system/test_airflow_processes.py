"""The example DAGs under Airflow's real processes, triggered through the REST API as a user would.

api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite) on 127.0.0.1, one set
for the module; only the scheduler and the dag-processor restart when ``[operators]
default_deferrable`` changes (operators read it when the DAG file is parsed: by the dag-processor
and by every task process, which the scheduler's LocalExecutor starts). A cluster policy sets
``retries = 0`` on every task, so one unlucky try fails the test: every task must succeed on its
first try. Both DAGs run with non-default params; the deferrable run is repeated to show that
Airflow's deferral/reschedule race (``airflow_aml/triggers/settle.py``) is avoided, not dodged.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.entities import DeploymentState, RunStatus
from airflow_aml.workspace import Workspace
from tests.system.airflow_processes import AirflowProcesses

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
PROBE_DAG = Path(__file__).resolve().parent / "dags" / "aml_probe.py"
TRAIN, RETRAIN, PROBE = "aml_train_register_deploy", "aml_scheduled_retraining", "aml_probe"
DEFERRABLE_REPETITIONS = 5
ROUND_TIMEOUT = 480  # seconds for one round (both DAG runs); a round takes about a minute here
SERVICE = "proc-service"  # created by the first round, updated (rolled over) by every later one
POLICY = '''
def task_policy(task):
    if task.dag_id != "aml_probe":  # whose durable task is killed on try 1 on purpose
        task.retries = 0  # the test: every task must succeed on its first try
'''
DELETE_DEPLOYMENTS = '''
from airflow_aml.deployments import Deployment
from airflow_aml.workspace import Workspace
if Workspace.list():
    ws = Workspace.get("default")
    for service in ws.list_deployments():
        Deployment.delete_if_exists(ws, service.name, timeout=120)
'''


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowProcesses]:
    home = tmp_path_factory.mktemp("airflow-processes")
    (home / "config").mkdir()
    (home / "config" / "airflow_local_settings.py").write_text(POLICY)
    dags = home / "dags"  # the example DAGs (linked, with their iris folder) and the probe DAG
    dags.mkdir()
    for entry in [*EXAMPLES.iterdir(), PROBE_DAG]:
        if entry.name != "__pycache__":
            (dags / entry.name).symlink_to(entry)
    processes = AirflowProcesses(home, dags_folder=dags, env={
        "AML_HOME": str(home / "aml"), "AML_PROGRESS": "0", "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
    })
    processes.airflow("db", "migrate")
    try:
        processes.start()
        processes.wait_for_dags([TRAIN, RETRAIN, PROBE])
        for dag_id in (TRAIN, RETRAIN):
            # Unpausing the weekly DAG also starts its latest scheduled run: checked like the others.
            processes.unpause(dag_id)
        processes.unpause(PROBE)
        yield processes
    finally:
        processes.stop()
        # The services the DAG runs deployed outlive Airflow (they are the product): not the test's.
        subprocess.run([sys.executable, "-c", DELETE_DEPLOYMENTS], env=processes.env, timeout=300, check=False)

PROBE_SETUP = '''
import json, sys
from airflow_aml.workspace import Workspace
ws = Workspace.create("default", exist_ok=True)
ws.set_secret("probe-password", sys.argv[1])
services = [d.name for d in ws.list_deployments()]
keys = list(ws.get_deployment(services[0]).get_keys()) if services else []
print(json.dumps([services[0] if services else "", [sys.argv[1], *keys]]))
'''


def set_default_deferrable(airflow: AirflowProcesses, value: bool) -> None:
    """``[operators] default_deferrable`` for the DAGs from now on: the scheduler (and with it the
    LocalExecutor's task processes) and the dag-processor restart with it."""
    setting = str(value)
    if airflow.env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == setting:
        return
    airflow.stop("scheduler", "dag-processor")
    airflow.env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = setting
    airflow.start("scheduler", "dag-processor")


def workspace(airflow: AirflowProcesses) -> Workspace:
    return Workspace.get("default", store_uri=f"sqlite:///{airflow.home / 'aml' / 'aml.db'}")


def run_round(airflow: AirflowProcesses, tag: str) -> dict[str, Any]:
    """Both example DAGs at once, with params other than their defaults; bounded in time."""
    # Three child runs, two at a time: some 30 s here, so training outlasts the 15 s in-task wait and
    # defers, and often ends within the settle time after that (the race's window).
    grid = [0.05, 0.5, 4.0]
    train_conf = {
        "experiment": f"{tag}-sweep", "grid_C": grid, "threshold": 0.8, "model_name": f"{tag}-model",
        "image_name": f"{tag}-scorer", "deployment_name": SERVICE,
    }
    retrain_conf = {"experiment": f"{tag}-weekly", "C": 0.7, "model_name": f"{tag}-weekly-model"}
    started = time.monotonic()
    runs = [(TRAIN, airflow.trigger(TRAIN, train_conf, run_id=f"{tag}-train")),
            (RETRAIN, airflow.trigger(RETRAIN, retrain_conf, run_id=f"{tag}-retrain"))]
    airflow.wait_for_runs(runs, timeout=ROUND_TIMEOUT)
    result = {"tag": tag, "seconds": round(time.monotonic() - started, 1), "runs": runs,
              "train_conf": train_conf, "retrain_conf": retrain_conf}
    for dag_id, run_id in runs:
        result[dag_id] = check_first_try_success(airflow, dag_id, run_id)
    check_params_honoured(airflow, train_conf, retrain_conf)
    return result


def check_first_try_success(airflow: AirflowProcesses, dag_id: str, run_id: str) -> dict[str, Any]:
    """Every task succeeded on try 1 and no state mismatch was logged; the tasks' durations and
    the audit log's deferrals, for the report."""
    tis = airflow.task_instances(dag_id, run_id)
    events = [(e["event"], e.get("task_id")) for e in airflow.events(dag_id, run_id)]
    bad = [ti for ti in tis if ti["state"] != "success" or ti["try_number"] != 1]
    detail = "\n".join(
        f"--- {ti['task_id']} {ti['state']} try {ti['try_number']}:\n"
        + airflow.task_log(dag_id, run_id, ti["task_id"], max(ti["try_number"], 1))[-3000:]
        for ti in bad
    )
    assert not bad, f"{dag_id} {run_id}: events {events}\n{detail}\n{airflow.log_text('scheduler')[-3000:]}"
    assert ("state mismatch", None) not in events and not [e for e in events if e[0] == "state mismatch"]
    logs = {ti["task_id"]: airflow.task_log(dag_id, run_id, ti["task_id"]) for ti in tis}
    return {
        "durations": {ti["task_id"]: round(ti["duration"] or 0.0, 1) for ti in tis},
        "deferred": sorted(task for event, task in events if event == "deferred"),
        "rescheduled": sum(1 for event, _ in events if event == "up_for_reschedule"),
        # Deferrals whose activity ended inside the race's window: the trigger held the event back.
        "held": sorted(task for task, text in logs.items() if "resuming the task in" in text),
        "waited_before_deferring": sorted(task for task, text in logs.items() if "Deferrable: waiting up to" in text),
    }


def check_params_honoured(airflow: AirflowProcesses, train_conf: dict[str, Any], retrain_conf: dict[str, Any]) -> None:
    ws = workspace(airflow)
    [sweep] = ws.experiment(train_conf["experiment"]).get_runs()
    assert sorted(float(c.record.params["C"]) for c in sweep.get_children()) == sorted(train_conf["grid_C"])
    [model] = ws.list_models(name=train_conf["model_name"])
    [image] = ws.list_images(name=train_conf["image_name"])
    assert image.model_ids == [model.id]
    service = ws.get_deployment(train_conf["deployment_name"])
    assert service.state is DeploymentState.HEALTHY and service.image_id == image.id
    [weekly] = ws.experiment(retrain_conf["experiment"]).get_runs()
    assert weekly.status is RunStatus.COMPLETED and float(weekly.record.params["C"]) == retrain_conf["C"]
    assert [m.version for m in ws.list_models(name=retrain_conf["model_name"])] == [1]


def check_only_loopback(airflow: AirflowProcesses) -> None:
    addresses = airflow.listening()
    assert f"127.0.0.1:{airflow.port}" in addresses, addresses
    assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in addresses), f"listening beyond loopback: {addresses}"


def report(airflow: AirflowProcesses, name: str, results: list[dict[str, Any]]) -> None:
    """Measured numbers, kept next to the Airflow home and printed (``pytest -s``)."""
    text = json.dumps(results, indent=1, default=str)
    (airflow.home / f"{name}.json").write_text(text)
    print(f"\n{name}: {text}")


def test_example_dags_with_default_deferrable_false(airflow: AirflowProcesses) -> None:
    set_default_deferrable(airflow, False)
    result = run_round(airflow, "plain")
    # The example makes training and the build deferrable explicitly; the rest follows the config.
    assert result[TRAIN]["waited_before_deferring"] == ["build_image", "train"], result
    assert result[RETRAIN]["waited_before_deferring"] == [], result  # a reschedule-mode sensor
    assert "serves" in airflow.task_log(TRAIN, "plain-train", "deploy")
    # The scheduled run that unpausing the weekly DAG started, under the same rules.
    scheduled = [r["dag_run_id"] for r in airflow.api("GET", f"/dags/{RETRAIN}/dagRuns")["dag_runs"]
                 if r["run_type"] == "scheduled"]
    airflow.wait_for_runs([(RETRAIN, run_id) for run_id in scheduled], timeout=ROUND_TIMEOUT)
    for run_id in scheduled:
        check_first_try_success(airflow, RETRAIN, run_id)
    check_only_loopback(airflow)
    report(airflow, "default_deferrable_false", [result])


def test_example_dags_with_default_deferrable_true_repeatedly(airflow: AirflowProcesses) -> None:
    set_default_deferrable(airflow, True)
    results = [run_round(airflow, f"deferred{i}") for i in range(DEFERRABLE_REPETITIONS)]
    for result in results:
        # The config took effect: the deployment is deferrable now (it waits briefly in the task first).
        assert {"build_image", "train", "deploy"} <= set(result[TRAIN]["waited_before_deferring"]), result
    # The triggerer really was used, and every task still succeeded on its first try.
    assert any(r[TRAIN]["deferred"] or r[RETRAIN]["deferred"] for r in results), results
    check_only_loopback(airflow)
    report(airflow, "default_deferrable_true", results)


def test_secrets_are_masked_and_a_killed_worker_reattaches_to_its_run(airflow: AirflowProcesses) -> None:
    """Under the real task supervisor: the masker (``hooks/workspace.py``: every value the SDK
    reveals goes to ``mask_secret``) and durable execution (``operators/durable.py``)."""
    # As the Airflow installation's user (its AML_HOME holds the workspace's secret key): the
    # embedded default (made by the rounds above, or here as the hook would when run alone), a
    # secret, and the keys of the web service the rounds deployed.
    secret = f"probe-{secrets.token_hex(12)}"
    setup = subprocess.run([sys.executable, "-c", PROBE_SETUP, secret], env=airflow.env, check=True,
                           capture_output=True, text=True, timeout=120)
    deployment, values = json.loads(setup.stdout.splitlines()[-1])
    assert values[0] == secret
    ws = workspace(airflow)
    conf = {"secret_name": "probe-password", "deployment": deployment}
    run_id = airflow.trigger(PROBE, conf, run_id="probe")
    airflow.wait_for_runs([(PROBE, run_id)], timeout=ROUND_TIMEOUT)
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(PROBE, run_id)}

    assert tis["reveal"]["state"] == "success", airflow.task_log(PROBE, run_id, "reveal")
    log = airflow.task_log(PROBE, run_id, "reveal")
    for what in ("print", "task logger", "stdlib logger"):
        assert log.count(f"{what}: ***") == len(values), (what, log)
    written = [p for p in (airflow.home / "logs").rglob("*") if p.is_file()]
    leaked = [str(p) for p in written if any(v.encode() in p.read_bytes() for v in values)]
    assert written and not leaked, leaked

    durable = tis["train_durable"]
    retry_log = airflow.task_log(PROBE, run_id, "train_durable", 2)
    assert (durable["state"], durable["try_number"]) == ("success", 2), retry_log
    assert "Reconnecting to existing job" in retry_log or "Job already completed successfully" in retry_log
    [run] = ws.experiment("probe-durable").get_runs()  # one run: try 2 did not train again
    assert run.status is RunStatus.COMPLETED and run.id in retry_log
    report(airflow, "probe", [{"reveal": len(values), "retry_reattached": "Reconnecting" in retry_log}])
