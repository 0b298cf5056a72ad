from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_aml.assets import model_asset, model_asset_uri
from airflow_aml.operators.model import AmlRegisterModelOperator
from airflow_aml.workspace import Workspace
from tests.unit.conftest import make_context


def _trained_run(workspace: Workspace, accuracy: float) -> str:
    run = workspace.experiment("exp").start_logging()
    run.log("accuracy", accuracy)
    run.upload_bytes("outputs/model.pkl", f"model {accuracy}".encode())
    run.complete()
    return run.id


def test_register_from_run_with_metrics_tags_link_and_asset(aml_conn: str, workspace: Workspace) -> None:
    run_id = _trained_run(workspace, 0.9)
    op = AmlRegisterModelOperator(
        task_id="register", model_name="iris", run_id=run_id, tags={"stage": "dev"}, aml_conn_id=aml_conn,
    )
    assert [o.uri for o in op.outlets] == [model_asset_uri("iris")]
    context = make_context(task_id="register")
    result = op.execute(context)
    assert result == {"name": "iris", "version": 1, "id": "iris:1", "run_id": run_id}
    model = workspace.get_model("iris")
    ti = context["ti"]  # the task instance is recorded, for the views on Airflow's task pages
    assert model.tags == {"stage": "dev", "airflow.dag_id": ti.dag_id, "airflow.task_id": "register",
                          "airflow.run_id": ti.run_id, "airflow.map_index": str(ti.map_index)}
    assert model.record.properties["metric.accuracy"] == "0.9"
    assert model.files() == ["outputs/model.pkl"] or model.files() == ["model.pkl"]
    assert context["ti"].xcom["_link_AmlModelLink"].endswith("/models/iris/versions/1")
    event = context["outlet_events"][model_asset("iris")]
    assert event.extra == {"version": 1, "model_id": "iris:1", "run_id": run_id, "workspace": "ws"}


def test_templated_name_has_no_automatic_asset() -> None:
    op = AmlRegisterModelOperator(task_id="r", model_name="{{ params.name }}", model_path="/x")
    assert op.outlets == []


def test_register_from_local_path(aml_conn: str, workspace: Workspace, tmp_path: Path, context) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"w")
    result = AmlRegisterModelOperator(
        task_id="r", model_name="local", model_path=str(model_dir), aml_conn_id=aml_conn
    ).execute(context)
    assert result["version"] == 1
    assert workspace.get_model("local").files() == ["weights.bin"]


def test_bad_sources_fail_at_once(aml_conn: str, workspace: Workspace, context) -> None:
    with pytest.raises(AirflowFailException, match="exactly one"):
        AmlRegisterModelOperator(task_id="r", model_name="m", aml_conn_id=aml_conn).execute(context)
    with pytest.raises(AirflowFailException, match="does not exist"):
        AmlRegisterModelOperator(
            task_id="r", model_name="m", model_path="/no/such/model", aml_conn_id=aml_conn
        ).execute(context)
    with pytest.raises(AirflowFailException, match="Invalid model name"):
        AmlRegisterModelOperator(
            task_id="r", model_name="bad name", model_path="/tmp", aml_conn_id=aml_conn, emit_asset=False
        ).execute(context)
    assert workspace.list_models() == []


def test_register_only_if_better(aml_conn: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    def register(accuracy: float, run_id_suffix: str) -> dict:
        op = AmlRegisterModelOperator(
            task_id="r", model_name="iris", run_id=_trained_run(workspace, accuracy), compare_metric="accuracy",
            aml_conn_id=aml_conn,
        )
        return op.execute(make_context(run_id=run_id_suffix))

    assert register(0.8, "a")["version"] == 1  # the first version is always registered
    assert register(0.9, "b")["version"] == 2
    capsys.readouterr()
    with pytest.raises(AirflowSkipException, match="does not beat iris version 2"):
        register(0.85, "c")
    # The reason is in the task log itself, not only in the skip (shown in the collapsed "Post Execute").
    output = capsys.readouterr()
    assert "accuracy = 0.85 does not beat iris version 2 (0.9, maximize); not registering" in output.out + output.err
    with pytest.raises(AirflowSkipException):
        register(0.9, "d")  # equal is not better
    assert [m.version for m in workspace.list_models(name="iris")] == [2, 1]
