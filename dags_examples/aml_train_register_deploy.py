"""Train -> pick the best run -> gate on a threshold -> register the model.

The training is a hyper-parameter sweep run as child runs on the workspace's local compute target
(``dags_examples/iris/train.py``, scikit-learn's iris data). Start it from the Airflow UI with your
own experiment, grid, threshold and model name (the trigger form shows the params below), or run
it as is:

    airflow dags test aml_train_register_deploy

Image and deployment tasks join this DAG with the image registry and web services.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_aml.assets import model_asset
from airflow_aml.operators.model import AmlRegisterModelOperator
from airflow_aml.operators.query import AmlBestRunOperator
from airflow_aml.operators.run import AmlSubmitRunOperator

SOURCE = Path(__file__).parent / "iris"
DEFAULT_MODEL = "iris-classifier"

with DAG(
    dag_id="aml_train_register_deploy",
    description="Train a sweep, select the best run, register the model",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"aml_conn_id": "{{ params.aml_conn_id }}"},  # every AML task of this DAG
    tags=["aml", "example"],
    params={
        "aml_conn_id": Param("aml_default", type="string", description="aml_workspace connection to use"),
        "experiment": Param("iris-train", type="string", description="Experiment the runs are grouped in"),
        "grid_C": Param(
            [0.01, 0.1, 1.0, 10.0], type="array", items={"type": "number", "exclusiveMinimum": 0},
            minItems=1, description="Values of C (inverse regularisation) to sweep, one child run each",
        ),
        "metric": Param("cv_accuracy", type="string", enum=["cv_accuracy", "accuracy"]),
        "threshold": Param(0.9, type="number", minimum=0, maximum=1, description="Best run must reach it"),
        "model_name": Param(DEFAULT_MODEL, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    },
) as dag:
    train = AmlSubmitRunOperator(
        task_id="train",
        experiment_name="{{ params.experiment }}",
        source_directory=str(SOURCE),
        script="train.py",
        sweep={"grid": {"C": "{{ params.grid_C }}"}, "max_concurrent": 2},
        tags={"dag_run": "{{ run_id }}"},
        poll_interval=2,
        timeout=1800,
    )
    best = AmlBestRunOperator(
        task_id="best_run",
        experiment_name="{{ params.experiment }}",
        metric="{{ params.metric }}",
        parent_run_id="{{ ti.xcom_pull(task_ids='train') }}",
        threshold="{{ params.threshold }}",  # type: ignore[arg-type]
    )
    register = AmlRegisterModelOperator(
        task_id="register_model",
        model_name="{{ params.model_name }}",
        run_id="{{ ti.xcom_pull(task_ids='best_run')['run_id'] }}",
        run_path="outputs",
        tags={"experiment": "{{ params.experiment }}", "dag_run": "{{ run_id }}"},
        description="Logistic regression on iris, best of a C sweep",
        outlets=[model_asset(DEFAULT_MODEL)],
    )
    train >> best >> register
