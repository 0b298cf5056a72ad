"""Scheduled retraining: train with the default hyper-parameters every week, and register a new
model version only when it beats the latest registered one.

Shows the other way of waiting: the training task returns at once (``wait_for_completion=False``)
and a sensor in reschedule mode waits for the run without holding a worker slot between pokes.
Its poke interval is 20 s: a reschedule-mode poke queued sooner than ~15 s after the previous one
can be failed by Airflow (the race the README explains; the sensor never reschedules sooner).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_aml.assets import model_asset
from airflow_aml.operators.model import AmlRegisterModelOperator
from airflow_aml.operators.run import AmlSubmitRunOperator
from airflow_aml.sensors.activity import AmlRunSensor

SOURCE = Path(__file__).parent / "iris"
DEFAULT_MODEL = "iris-classifier"

with DAG(
    dag_id="aml_scheduled_retraining",
    description="Weekly retraining; registers only a better model",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "aml_conn_id": "{{ params.aml_conn_id }}",  # every AML task of this DAG
    },
    tags=["aml", "example"],
    params={
        "aml_conn_id": Param("aml_default", type="string", description="aml_workspace connection to use"),
        "experiment": Param("iris-retraining", type="string"),
        "C": Param(1.0, type="number", exclusiveMinimum=0),
        "metric": Param("cv_accuracy", type="string", enum=["cv_accuracy", "accuracy"]),
        "model_name": Param(DEFAULT_MODEL, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    },
) as dag:
    train = AmlSubmitRunOperator(
        task_id="train",
        experiment_name="{{ params.experiment }}",
        source_directory=str(SOURCE),
        script="train.py",
        arguments=["--C", "{{ params.C }}"],
        tags={"schedule": "weekly", "dag_run": "{{ run_id }}"},
        wait_for_completion=False,
    )
    wait = AmlRunSensor(
        task_id="wait_for_training",
        run_id="{{ ti.xcom_pull(task_ids='train') }}",
        mode="reschedule",
        poke_interval=20,  # more than the 15 s settle time (README: reschedule mode)
        timeout=3600,
    )
    register = AmlRegisterModelOperator(
        task_id="register_if_better",
        model_name="{{ params.model_name }}",
        run_id="{{ ti.xcom_pull(task_ids='train') }}",
        compare_metric="{{ params.metric }}",
        goal="maximize",
        tags={"experiment": "{{ params.experiment }}", "trigger": "schedule"},
        outlets=[model_asset(DEFAULT_MODEL)],
    )
    train >> wait >> register
