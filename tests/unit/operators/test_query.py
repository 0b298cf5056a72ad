from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_aml.operators.query import AmlBestRunBranchOperator, AmlBestRunOperator, AmlQueryRunsOperator
from airflow_aml.workspace import Workspace


@pytest.fixture
def sweep(workspace: Workspace) -> str:
    parent = workspace.experiment("exp").start_logging()
    for c, accuracy in ((0.1, 0.7), (1.0, 0.93), (10.0, 0.9)):
        with parent.child_run(tags={"C": str(c)}) as child:
            child.log_params({"C": c})
            child.log("accuracy", accuracy)
            child.log("loss", 1 - accuracy)
    parent.complete()
    return parent.id


def test_query_runs(aml_conn: str, sweep: str, context) -> None:
    op = AmlQueryRunsOperator(
        task_id="q", experiment_name="exp", metric_conditions=["accuracy >= 0.9"], order_by="accuracy",
        aml_conn_id=aml_conn,
    )
    result = op.execute(context)
    assert [r["tags"]["C"] for r in result] == ["1.0", "10.0"]
    assert result[0]["metrics"]["accuracy"] == 0.93
    with pytest.raises(AirflowFailException, match="Metric condition"):
        AmlQueryRunsOperator(
            task_id="q", experiment_name="exp", metric_conditions=["accuracy > high"], aml_conn_id=aml_conn
        ).execute(context)


def test_best_run_passes_threshold(aml_conn: str, sweep: str, context) -> None:
    best = AmlBestRunOperator(
        task_id="best", experiment_name="exp", metric="accuracy", parent_run_id=sweep, threshold=0.9,
        aml_conn_id=aml_conn,
    ).execute(context)
    assert best["value"] == 0.93 and best["params"] == {"C": "1.0"}
    assert best["parent_run_id"] == sweep
    assert context["ti"].xcom["_link_AmlRunLink"].endswith(best["run_id"])
    lowest_loss = AmlBestRunOperator(
        task_id="best", experiment_name="exp", metric="loss", goal="minimize", threshold=0.1, aml_conn_id=aml_conn,
    ).execute(context)
    assert lowest_loss["run_id"] == best["run_id"]


def test_threshold_miss_fails_or_skips(aml_conn: str, sweep: str, context) -> None:
    kwargs = {"task_id": "best", "experiment_name": "exp", "metric": "accuracy", "threshold": 0.95,
              "aml_conn_id": aml_conn}
    with pytest.raises(AirflowFailException, match="misses the threshold 0.95"):
        AmlBestRunOperator(**kwargs).execute(context)
    with pytest.raises(AirflowSkipException, match="misses"):
        AmlBestRunOperator(**kwargs, on_threshold_miss="skip").execute(context)
    with pytest.raises(AirflowFailException, match="on_threshold_miss"):
        AmlBestRunOperator(**kwargs, on_threshold_miss="retry").execute(context)


def test_no_run_logged_the_metric(aml_conn: str, sweep: str, context) -> None:
    with pytest.raises(AirflowFailException, match="logged metric 'f1'"):
        AmlBestRunOperator(task_id="b", experiment_name="exp", metric="f1", aml_conn_id=aml_conn).execute(context)
    with pytest.raises(AirflowFailException, match="goal"):
        AmlBestRunOperator(
            task_id="b", experiment_name="exp", metric="accuracy", goal="best", aml_conn_id=aml_conn
        ).execute(context)


@pytest.mark.parametrize(("threshold", "branch"), [(0.9, "register"), (0.99, "retrain")])
def test_branch_on_threshold(aml_conn: str, sweep: str, context, threshold: float, branch: str) -> None:
    op = AmlBestRunBranchOperator(
        task_id="gate", experiment_name="exp", metric="accuracy", threshold=threshold,
        follow_task_ids_if_passed="register", follow_task_ids_if_missed="retrain", aml_conn_id=aml_conn,
    )
    assert op.choose_branch(context) == branch
    assert context["ti"].xcom["best_run"]["value"] == 0.93
