from __future__ import annotations

import math
from pathlib import Path

import pytest

from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.exceptions import InvalidMetricError, PathEscapeError, RunFailedError, RunNotFoundError
from airflow_aml.runtime import OfflineRun, Run
from airflow_aml.workspace import Workspace


def test_metrics_fold_like_the_azure_sdk(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    run.log("accuracy", 0.9)
    for loss in (3, 2, 1):
        run.log("loss", loss)
    run.log_list("folds", [0.8, 0.85])
    run.log_row("roc", fpr=0.0, tpr=0.0)
    run.log_row("roc", fpr=0.5, tpr=0.9)
    run.log_table("pr", {"p": [1.0, 0.5], "r": [0.1, 0.9]})
    run.log("nan", float("nan"))
    metrics = run.get_metrics()
    assert metrics["accuracy"] == 0.9
    assert metrics["loss"] == [3.0, 2.0, 1.0]
    assert metrics["folds"] == [0.8, 0.85]
    assert metrics["roc"] == {"fpr": [0.0, 0.5], "tpr": [0.0, 0.9]}
    assert metrics["pr"] == {"p": [1.0, 0.5], "r": [0.1, 0.9]}
    assert math.isnan(metrics["nan"])
    assert run.get_metrics("loss") == {"loss": [3.0, 2.0, 1.0]}


@pytest.mark.parametrize("value", ["0.9", None, True, [1], {"a": 1}])
def test_non_numbers_are_refused_and_nothing_is_logged(workspace: Workspace, value: object) -> None:
    run = workspace.experiment("e").start_logging()
    with pytest.raises(InvalidMetricError, match="'m'.*not a number"):
        run.log("m", value)  # type: ignore[arg-type]
    with pytest.raises(InvalidMetricError):
        run.log_list("l", [1.0, value])  # type: ignore[list-item]
    assert run.get_metrics() == {}


def test_bad_metric_names_and_tables(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    for name in ("", " padded", "a\nb", 3):
        with pytest.raises(InvalidMetricError):
            run.log(name, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidMetricError, match="different lengths"):
        run.log_table("t", {"a": [1, 2], "b": [1]})
    with pytest.raises(InvalidMetricError, match="at least one column"):
        run.log_row("r")


def test_log_image_from_png_and_figure(workspace: Workspace, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = workspace.experiment("e").start_logging()
    figure = plt.figure()
    plt.plot([1, 2, 3])
    run.log_image("curve", plot=figure)
    png = tmp_path / "x.png"
    figure.savefig(png)
    plt.close(figure)
    run.log_image("file", path=png)
    text_file = tmp_path / "t.txt"
    text_file.write_text("x")
    with pytest.raises(InvalidMetricError, match="not a PNG"):
        run.log_image("bad", path=text_file)
    metrics = run.get_metrics()
    assert metrics["curve"] == "images/curve_0.png"
    assert set(run.get_file_names()) == {"images/curve_0.png", "images/file_0.png"}
    downloaded = run.download_file("images/file_0.png", tmp_path / "copy.png")
    assert downloaded.read_bytes() == png.read_bytes()


def test_params_tags_and_properties(workspace: Workspace) -> None:
    from airflow_aml.exceptions import ConflictError

    run = workspace.experiment("e").start_logging()
    run.log_params({"C": 1.0, "solver": "lbfgs"})
    run.tag("team", "ml")
    run.add_properties({"git": "abc"})
    with pytest.raises(ConflictError):
        run.add_properties({"git": "def"})
    record = run.record
    assert record.params == {"C": "1.0", "solver": "lbfgs"}
    assert record.tags == {"team": "ml"}
    assert record.properties == {"git": "abc", "aml.datastore": "workspaceblobstore"}


def test_files_upload_download_and_listing(workspace: Workspace, tmp_path: Path) -> None:
    run = workspace.experiment("e").start_logging()
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"w" * 100)
    (src / "sub" / "vocab.txt").write_text("a b c")
    run.upload_folder("outputs/model", src)
    (tmp_path / "n.txt").write_text("n")
    run.upload_file("outputs/notes.txt", tmp_path / "n.txt")
    assert sorted(run.get_file_names()) == [
        "outputs/model/sub/vocab.txt", "outputs/model/weights.bin", "outputs/notes.txt",
    ]
    out = tmp_path / "download"
    run.download_files("outputs", out)
    assert (out / "outputs" / "model" / "sub" / "vocab.txt").read_text() == "a b c"
    with pytest.raises(PathEscapeError):
        run.upload_file("../../escape.txt", tmp_path / "n.txt")


def test_snapshot_of_interactive_run_round_trips(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    run = workspace.experiment("e").start_logging(snapshot_directory=src)
    assert run.record.snapshot_sha256 and len(run.record.snapshot_sha256) == 64
    assert run.restore_snapshot(tmp_path / "restored") == ["train.py"]
    assert (tmp_path / "restored" / "train.py").read_text() == "print('hi')\n"
    assert "snapshot.zip" not in run.get_file_names()


def test_children_any_depth_and_status_folding(workspace: Workspace) -> None:
    parent = workspace.experiment("e").start_logging()
    kids = parent.create_children(tag_key="C", tag_values=["0.1", "1"])
    grandchild = kids[0].child_run("deep")
    assert [k.record.tags["C"] for k in parent.get_children()] == ["0.1", "1"]
    assert {r.id for r in parent.get_children(recursive=True)} == {kids[0].id, kids[1].id, grandchild.id}
    assert grandchild.parent is not None and grandchild.parent.id == kids[0].id
    parent.complete()
    assert parent.get_status() is RunStatus.COMPLETED
    assert parent.get_status(include_children=True) is RunStatus.RUNNING
    for run in (grandchild, *kids):
        run.complete()
    assert parent.get_status(include_children=True) is RunStatus.COMPLETED
    grandchild_metrics = parent.get_metrics(recursive=True)
    assert set(grandchild_metrics) == {parent.id, kids[0].id, kids[1].id, grandchild.id}


def test_context_manager_records_failure_and_activity(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    with pytest.raises(ZeroDivisionError), run:
        1 / 0  # noqa: B018
    record = run.record
    assert record.status is RunStatus.FAILED
    assert "ZeroDivisionError" in (record.error or "")
    with pytest.raises(RunFailedError, match="Failed") as info:
        run.wait_for_completion(poll_interval=0.01)
    assert info.value.run_id == run.id
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_cancel_in_process_run(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    run.cancel()
    assert run.status is RunStatus.CANCELED
    run.cancel()  # idempotent
    assert run.record.end_time is not None


def test_get_context_offline_and_live(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("AML_RUN_ID", raising=False)
    offline = Run.get_context()
    assert isinstance(offline, OfflineRun)
    offline.log("acc", 0.5)
    assert offline.get_metrics() == {"acc": 0.5}
    assert "acc = 0.5" in capsys.readouterr().err

    run = workspace.experiment("e").start_logging()
    monkeypatch.setenv("AML_RUN_ID", run.id)
    monkeypatch.setenv("AML_WORKSPACE", workspace.name)
    monkeypatch.setenv("AML_STORE_URI", workspace.store_uri)
    live = Run.get_context()
    assert isinstance(live, Run) and live.id == run.id


def test_unknown_run(workspace: Workspace) -> None:
    with pytest.raises(RunNotFoundError, match="nope"):
        workspace.get_run("nope")


def test_activity_follows_in_process_run(workspace: Workspace) -> None:
    run = workspace.experiment("e").start_logging()
    activity = workspace.store.create_activity(workspace.name, kind="run", target_id=run.id)
    run.complete()
    final = workspace.get_activity(activity.activity_id)
    assert final.status is ActivityStatus.SUCCEEDED and final.progress == 1.0


def test_files_stay_readable_after_the_default_datastore_changes(workspace: Workspace, tmp_path: Path) -> None:
    run = workspace.experiment("e").start_logging()
    run.upload_bytes("outputs/model.pkl", b"m")
    child = run.child_run()
    child.upload_bytes("outputs/child.pkl", b"c")
    workspace.register_datastore("archive", config={"root": str(tmp_path / "archive")}, set_default=True)
    assert workspace.get_run(run.id).get_file_names() == ["outputs/model.pkl"]
    assert workspace.get_run(child.id).get_file_names() == ["outputs/child.pkl"]
