"""Probes for tests/system/test_airflow_processes.py (not an example DAG): what only a real task
run shows. It sits in a DAGs folder next to links to the example DAGs and their ``iris`` folder.

- ``reveal`` reads a workspace secret and a web service's keys through the hook and writes them
  to stdout, the task logger and a third-party (stdlib) logger: the task log must show ``***``.
- ``train_durable`` submits a training run and its worker dies (SIGKILL) on try 1 right after the
  run's id reached Airflow's task state, as an OOM-killed worker would: try 2 must reattach to
  that run (``ResumableJobMixin``) instead of training again.
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.operators.run import AmlSubmitRunOperator

SOURCE = Path(__file__).parent / "iris"


class WorkerKilledOnFirstTry(AmlSubmitRunOperator):
    def poll_until_complete(self, external_id: Any, context: Any) -> Any:
        if context["ti"].try_number == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().poll_until_complete(external_id, context)


with DAG(
    dag_id="aml_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"secret_name": Param("probe-password", type="string"), "deployment": Param("", type="string")},
):

    @task
    def reveal(params: dict[str, Any] | None = None) -> int:
        ws = AmlWorkspaceHook().workspace
        values = [ws.get_secret(params["secret_name"])]
        if params["deployment"]:
            values += list(ws.get_deployment(params["deployment"]).get_keys())
        for value in values:
            print(f"print: {value}")
            logging.getLogger("airflow.task").info("task logger: %s", value)
            logging.getLogger("probe.thirdparty").warning("stdlib logger: %s", value)
        return len(values)  # never the values: Airflow does not mask XComs

    reveal()
    WorkerKilledOnFirstTry(
        task_id="train_durable", experiment_name="probe-durable", source_directory=str(SOURCE), script="train.py",
        retries=1, retry_delay=timedelta(seconds=1), poll_interval=1,
    )
