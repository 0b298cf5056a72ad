"""Train -> pick the best run -> gate on a threshold -> register -> build an image -> deploy -> score.

The training is a hyper-parameter sweep run as child runs on the workspace's local compute target,
or the one the ``compute_target`` param names (``dags_examples/iris/train.py``, scikit-learn's
iris data). The best run's model is registered,
packed with the built-in scikit-learn scorer into the next version of a scoring image (local
builder: a cached virtualenv), and deployed as a key-protected web service on the local target
(created the first time, rolled over to the new image on later runs). The DAG waits until the
service is Healthy and scores two flowers through it.

The service stays up after the DAG: it is the product. Its scoring URI and keys:

    from airflow_aml.workspace import Workspace
    service = Workspace.get("default").get_deployment("iris-service")
    service.scoring_uri, service.get_keys()

Start it from the Airflow UI with your own experiment, grid, threshold, model, image and service
names (the trigger form shows the params below), or run it as is:

    airflow dags test aml_train_register_deploy

Training and the image build set ``deferrable=True``: they can take minutes, and a deferred task
holds no worker slot meanwhile (the triggerer waits; each first waits ``defer_after`` = 15 s in
the task, so a short one never defers). The deployment and the Healthy check follow
``[operators] default_deferrable``: a local deployment is ready in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_aml.assets import model_asset
from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.operators.deployment import AmlDeployWebServiceOperator
from airflow_aml.operators.image import AmlBuildImageOperator
from airflow_aml.operators.model import AmlRegisterModelOperator
from airflow_aml.operators.query import AmlBestRunOperator
from airflow_aml.operators.run import AmlSubmitRunOperator
from airflow_aml.sensors.deployment import AmlDeploymentSensor

SOURCE = Path(__file__).parent / "iris"
DEFAULT_MODEL = "iris-classifier"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Two flowers and the classes the service must give them (setosa, virginica).
SAMPLE = {"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
EXPECTED_CLASSES = [0, 2]

with DAG(
    dag_id="aml_train_register_deploy",
    description="Train a sweep, select the best run, register the model, deploy it as a web service",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"aml_conn_id": "{{ params.aml_conn_id }}"},  # every AML task of this DAG
    tags=["aml", "example"],
    params={
        "aml_conn_id": Param("aml_default", type="string", description="aml_workspace connection to use"),
        "experiment": Param("iris-train", type="string", description="Experiment the runs are grouped in"),
        "compute_target": Param(
            "local", type="string", pattern=NAME_PATTERN,
            description="Compute target the sweep's child runs train on: local, or a target registered in "
                        "the workspace (e.g. a spark one; a docker one needs an environment with scikit-learn)",
        ),
        "grid_C": Param(
            [0.01, 0.1, 1.0, 10.0], type="array", items={"type": "number", "exclusiveMinimum": 0},
            minItems=1, description="Values of C (inverse regularisation) to sweep, one child run each",
        ),
        "metric": Param("cv_accuracy", type="string", enum=["cv_accuracy", "accuracy"]),
        "threshold": Param(0.9, type="number", minimum=0, maximum=1, description="Best run must reach it"),
        "model_name": Param(DEFAULT_MODEL, type="string", pattern=NAME_PATTERN),
        "image_name": Param("iris-scorer", type="string", pattern=NAME_PATTERN,
                            description="Scoring image the model is packed into (a new version per run)"),
        "deployment_name": Param("iris-service", type="string", pattern=NAME_PATTERN,
                                 description="Web service to create, or update to the new image"),
    },
) as dag:
    train = AmlSubmitRunOperator(
        task_id="train",
        experiment_name="{{ params.experiment }}",
        source_directory=str(SOURCE),
        script="train.py",
        compute_target="{{ params.compute_target }}",
        sweep={"grid": {"C": "{{ params.grid_C }}"}, "max_concurrent": 2},
        primary_metric="{{ params.metric }}",  # names the best child in the task log
        tags={"dag_run": "{{ run_id }}"},
        deferrable=True,  # a sweep can train for long: free the worker slot
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
    build_image = AmlBuildImageOperator(
        task_id="build_image",
        image_name="{{ params.image_name }}",
        models=["{{ ti.xcom_pull(task_ids='register_model')['id'] }}"],
        builtin_scorer="sklearn",
        tags={"dag_run": "{{ run_id }}"},
        description="Built-in scikit-learn scorer for the registered iris classifier",
        deferrable=True,  # a first build installs a virtualenv (or a Docker image): minutes
        poll_interval=2,
        timeout=1800,
    )
    deploy = AmlDeployWebServiceOperator(
        task_id="deploy",
        deployment_name="{{ params.deployment_name }}",
        image="{{ ti.xcom_pull(task_ids='build_image') }}",
        target="local",
        config={"replicas": 1},
        tags={"model": "{{ ti.xcom_pull(task_ids='register_model')['id'] }}", "dag_run": "{{ run_id }}"},
        poll_interval=2,
        timeout=900,
    )
    wait_healthy = AmlDeploymentSensor(
        task_id="wait_healthy",
        deployment_name="{{ params.deployment_name }}",
        poke_interval=2,
        timeout=600,
    )

    @task
    def score_sample(params: dict[str, Any] | None = None) -> Any:
        """Score two flowers through the service, as a client would (with its key)."""
        params = params or {}
        hook = AmlWorkspaceHook(aml_conn_id=params.get("aml_conn_id", "aml_default"))
        service = hook.workspace.get_deployment(params.get("deployment_name", "iris-service"))
        answer = service.run(SAMPLE)
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if predictions != EXPECTED_CLASSES:
            raise ValueError(f"{service.name} at {service.scoring_uri} predicted {predictions!r}, "
                             f"expected {EXPECTED_CLASSES}: {answer!r}")
        print(f"Scored {SAMPLE['data']} at {service.scoring_uri}: {predictions}")
        return answer

    train >> best >> register >> build_image >> deploy >> wait_healthy >> score_sample()
