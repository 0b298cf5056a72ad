"""The ``airflow-aml`` command line, driven through typer's CliRunner on a temporary SQLite store."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airflow_aml.cli import app
from airflow_aml.entities import ActivityStatus, RunStatus
from airflow_aml.workspace import Workspace
from tests.unit.cli.helpers import WS, Invoke, assert_one_line_error, finished_run


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(
        textwrap.dedent(
            """\
            import os
            import sys

            from airflow_aml.runtime import Run

            run = Run.get_context()
            print("hello from train", sys.argv[1:])
            for i in range(3):
                run.log("loss", 1.0 / (i + 1))
            run.log("accuracy", 0.93)
            os.makedirs("outputs", exist_ok=True)
            with open("outputs/model.txt", "w") as handle:
                handle.write("model")
            """
        )
    )
    (folder / "fail.py").write_text("print('about to fail')\nraise SystemExit('boom')\n")
    (folder / "sleep.py").write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n")
    return folder


# ------------------------------------------------------------------------------------------ workspace
def test_workspace_create_show_list(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("workspace", "create", "demo", "--description", "a demo", "--datastore-root", str(tmp_path / "d"))
    assert result.exit_code == 0, result.output
    assert "demo" in result.stdout

    assert_one_line_error(invoke("workspace", "create", "demo"), "demo")
    again = invoke("workspace", "create", "demo", "--exist-ok")
    assert again.exit_code == 0, again.output

    shown = invoke("workspace", "show", workspace="demo")
    assert shown.exit_code == 0, shown.output
    assert "a demo" in shown.stdout and "workspaceblobstore" in shown.stdout and "alice (Owner)" in shown.stdout

    data = json.loads(invoke("workspace", "show", "demo", "--json").stdout)
    assert data["name"] == "demo" and data["role"] == "Owner" and data["datastores"] == ["workspaceblobstore"]

    listed = json.loads(invoke("workspace", "list", global_args=("--json",)).stdout)
    assert [w["name"] for w in listed] == ["demo"]
    assert "demo" in invoke("workspace", "list").stdout


def test_workspace_and_experiment_from_env(invoke: Invoke, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    finished_run(ws, "from-env")
    monkeypatch.setenv("AML_WORKSPACE", WS)
    result = CliRunner().invoke(app, ["--store-uri", ws.store_uri, "experiment", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"workspace": WS, "name": "from-env"}]


def test_store_uri_password_is_never_printed(invoke: Invoke) -> None:
    result = CliRunner().invoke(app, ["--store-uri", "nosuch://alice:hunter2@db.example/aml", "workspace", "list"])
    assert_one_line_error(result, "alice:***@db.example")
    assert "hunter2" not in result.output


def test_db_upgrade(invoke: Invoke) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "schema revision" in result.stdout


# ------------------------------------------------------------------------------------------ runs (in-process)
def test_run_list_filters_and_orders(invoke: Invoke, ws: Workspace) -> None:
    low = finished_run(ws, accuracy=0.5, tags={"team": "a"})
    high = finished_run(ws, accuracy=0.9, tags={"team": "b"})
    mid = finished_run(ws, accuracy=0.7, tags={"team": "a"})
    child = finished_run(ws, accuracy=0.99, parent=mid)

    def ids(*args: str) -> list[str]:
        result = invoke("run", "list", "-e", "exp", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["runId"] for r in json.loads(result.stdout)]

    assert ids() == [mid.id, high.id, low.id]  # newest first, top-level only
    assert ids("--order-by", "accuracy") == [high.id, mid.id, low.id]
    assert ids("--order-by", "accuracy", "--asc") == [low.id, mid.id, high.id]
    assert ids("--metric", "accuracy >= 0.7", "--order-by", "accuracy") == [high.id, mid.id]
    assert ids("--tag", "team=a") == [mid.id, low.id]
    assert ids("--status", "completed", "--limit", "1", "--order-by", "accuracy") == [high.id]
    assert ids("--status", "Running") == []
    assert child.id in ids("--children")

    table = invoke("run", "list", "-e", "exp", "--order-by", "accuracy", "--children")
    assert table.exit_code == 0, table.output
    assert "accuracy" in table.stdout and "0.99" in table.stdout and "team=b" in table.stdout
    assert high.id in table.stdout and "Completed" in table.stdout

    data = json.loads(invoke("run", "list", "-e", "exp", "--json").stdout)
    assert {r["runId"]: r["metrics"]["accuracy"] for r in data}[high.id] == 0.9


def test_run_show_and_metrics(invoke: Invoke, ws: Workspace) -> None:
    run = ws.experiment("exp").start_logging(tags={"k": "v"})
    run.log_list("loss", [1.0, 0.5, 0.25])
    run.log("accuracy", 0.8)
    run.log_row("roc", fpr=0.1, tpr=0.7)
    run.log_param("lr", 0.01)
    run.fail("ValueError: bad data")

    shown = invoke("run", "show", run.id)
    assert shown.exit_code == 0, shown.output
    for text in (run.id, "Failed", "k=v", "lr=0.01", "ValueError: bad data", "accuracy", "0.25", "table [fpr, tpr]"):
        assert text in shown.stdout, text

    details = json.loads(invoke("run", "show", run.id, "--json").stdout)
    assert details["status"] == "Failed" and details["params"] == {"lr": "0.01"}
    assert details["latestMetrics"] == {"accuracy": 0.8, "loss": 0.25, "roc": {"fpr": [0.1], "tpr": [0.7]}}

    metrics = invoke("run", "metrics", run.id)
    assert metrics.exit_code == 0, metrics.output
    assert "1, 0.5, 0.25 (3 values)" in metrics.stdout
    as_json = invoke("run", "metrics", run.id, global_args=("--json",))  # the global --json
    assert json.loads(as_json.stdout)["loss"] == [1.0, 0.5, 0.25]
    only = json.loads(invoke("run", "metrics", run.id, "--name", "accuracy", "--json").stdout)
    assert only == {"accuracy": 0.8}


def test_run_best(invoke: Invoke, ws: Workspace) -> None:
    low = finished_run(ws, accuracy=0.5)
    high = finished_run(ws, accuracy=0.9)
    best = invoke("run", "best", "-e", "exp", "--metric", "accuracy")
    assert best.exit_code == 0, best.output
    assert best.stdout.strip() == high.id
    assert "accuracy = 0.9" in best.stderr
    worst = json.loads(
        invoke("run", "best", "-e", "exp", "--metric", "accuracy", "--goal", "minimize", "--json").stdout
    )
    assert worst == {"runId": low.id, "experiment": "exp", "metric": "accuracy", "goal": "minimize", "value": 0.5}
    assert_one_line_error(invoke("run", "best", "-e", "exp", "--metric", "f1"), "f1")


def test_logs_follow_timeout(invoke: Invoke, ws: Workspace) -> None:
    run = ws.experiment("exp").start_logging()
    ws.store.append_log(run.id, "stdout", "still going\n")
    result = invoke("run", "logs", run.id, "--follow", "--interval", "0.05", "--timeout", "0.2")
    assert result.exit_code == 1
    assert result.stdout.startswith("still going\n")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: ") and "Running" in errors[0]
    run.complete()


def test_run_cancel_in_process_run(invoke: Invoke, ws: Workspace) -> None:
    run = ws.experiment("exp").start_logging()
    result = invoke("run", "cancel", run.id)
    assert result.exit_code == 0, result.output
    assert "Canceled" in result.stdout
    assert run.status is RunStatus.CANCELED
    again = invoke("run", "cancel", run.id)
    assert again.exit_code == 0 and "already ended Canceled" in again.stderr


def test_run_files_download_snapshot_logs(invoke: Invoke, ws: Workspace, src: Path, tmp_path: Path) -> None:
    run = ws.experiment("exp").start_logging(snapshot_directory=src)
    run.upload_bytes("outputs/model.txt", b"model")
    run.upload_bytes("logs/extra.txt", b"log")
    ws.store.append_log(run.id, "stdout", "line one\n")
    ws.store.append_log(run.id, "stderr", "line two\n")
    run.complete()

    files = invoke("run", "files", run.id)
    assert files.exit_code == 0, files.output
    assert files.stdout.splitlines() == ["logs/extra.txt", "outputs/model.txt"]
    assert json.loads(invoke("run", "files", run.id, "--json").stdout) == ["logs/extra.txt", "outputs/model.txt"]

    out = tmp_path / "out"
    downloaded = invoke("run", "download", run.id, "--output", str(out))
    assert downloaded.exit_code == 0, downloaded.output
    assert (out / "outputs" / "model.txt").read_bytes() == b"model"
    assert not (out / "logs").exists()

    restored = invoke("run", "snapshot", run.id, "--output", str(tmp_path / "restored"))
    assert restored.exit_code == 0, restored.output
    assert (tmp_path / "restored" / "train.py").read_text() == (src / "train.py").read_text()

    logs = invoke("run", "logs", run.id)
    assert logs.exit_code == 0, logs.output
    assert logs.stdout == "line one\nline two\n"
    followed = invoke("run", "logs", run.id, "--follow")  # the run has ended: prints and returns
    assert followed.exit_code == 0 and followed.stdout == "line one\nline two\n"


# ------------------------------------------------------------------------------------------ runs (submitted)
@pytest.mark.slow
def test_submit_wait_success(invoke: Invoke, ws: Workspace, src: Path, tmp_path: Path) -> None:
    result = invoke(
        "run",
        "submit",
        str(src),
        "--script",
        "train.py",
        "--arg",
        "--lr",
        "--arg",
        "0.1",
        "-e",
        "cli",
        "--tag",
        "team=ml",
        "--wait",
    )
    assert result.exit_code == 0, result.output
    run_id = result.stdout.splitlines()[0]
    assert "hello from train ['--lr', '0.1']" in result.stdout  # the streamed log
    assert f"Run {run_id} Completed" in result.stderr

    run = ws.get_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.record.tags == {"team": "ml"}
    assert run.get_metrics()["accuracy"] == pytest.approx(0.93)

    listed = json.loads(invoke("run", "list", "-e", "cli", "--json").stdout)
    assert [r["runId"] for r in listed] == [run_id]
    logs = invoke("run", "logs", run_id)
    assert "hello from train" in logs.stdout
    assert "outputs/model.txt" in invoke("run", "files", run_id).stdout
    invoke("run", "download", run_id, "-o", str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "outputs" / "model.txt").read_text() == "model"
    activities = json.loads(invoke("activity", "list", "--target", run_id, "--json").stdout)
    assert [(a["activity_id"], a["status"]) for a in activities] == [(run_id, "Succeeded")]
    shown = invoke("activity", "show", run_id)
    assert shown.exit_code == 0 and "Succeeded" in shown.stdout


@pytest.mark.slow
def test_submit_wait_json(invoke: Invoke, ws: Workspace, src: Path) -> None:
    result = invoke("run", "submit", str(src), "--script", "train.py", "-e", "cli", "--wait", "--json")
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)  # only the JSON document: the log went to stderr
    assert details["status"] == "Completed" and details["experiment"] == "cli"
    assert "hello from train" in result.stderr

    quiet = invoke("run", "submit", str(src), "--script", "train.py", "-e", "cli", "--wait", "--no-show-output")
    assert quiet.exit_code == 0, quiet.output
    assert "hello from train" not in quiet.output
    assert quiet.stdout.strip() == ws.experiment("cli").get_runs()[0].id


@pytest.mark.slow
def test_submit_run_config_and_failure(invoke: Invoke, ws: Workspace, src: Path) -> None:
    (src / ".aml").mkdir()
    (src / ".aml" / "failing.runconfig.yml").write_text("script: fail.py\ntarget: local\n")
    result = invoke("run", "submit", str(src), "--run-config", "failing", "-e", "cli", "--wait")
    assert result.exit_code == 1
    assert "about to fail" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "ended Failed" in errors[0]
    assert "Traceback" not in result.output
    run_id = result.stdout.splitlines()[0]
    assert ws.get_run(run_id).status is RunStatus.FAILED


@pytest.mark.slow
def test_submit_no_wait_then_cancel_and_follow(invoke: Invoke, ws: Workspace, src: Path) -> None:
    config = src / "sleep.yml"
    config.write_text("script: sleep.py\n")
    submitted = invoke("run", "submit", str(src), "--run-config", str(config), "-e", "cli", "--json")
    assert submitted.exit_code == 0, submitted.output
    run_id = json.loads(submitted.stdout)["runId"]
    run = ws.get_run(run_id)
    deadline = time.monotonic() + 60
    while "sleeping" not in run.get_log_text():  # cancel a running script, not a starting supervisor
        assert time.monotonic() < deadline, run.get_log_text()
        time.sleep(0.2)
    canceled = invoke("run", "cancel", run_id)
    assert canceled.exit_code == 0, canceled.output
    followed = invoke("run", "logs", run_id, "--follow", "--interval", "0.2", "--timeout", "60")
    assert followed.exit_code == 0, followed.output
    assert "sleeping" in followed.stdout
    assert run.status is RunStatus.CANCELED


# ------------------------------------------------------------------------------------------ resources
def test_datastore_register_upload_download(invoke: Invoke, ws: Workspace, tmp_path: Path) -> None:
    result = invoke("datastore", "register", "extra", "--root", str(tmp_path / "extra"))
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke("datastore", "list", "--json").stdout)
    assert {d["name"]: d["is_default"] for d in listed} == {"extra": False, "workspaceblobstore": True}

    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("a")
    (local / "sub" / "b.txt").write_text("b")
    uploaded = invoke("datastore", "upload", str(local), "data/in", "--datastore", "extra")
    assert uploaded.exit_code == 0, uploaded.output
    assert "2 file(s)" in uploaded.stderr
    down = tmp_path / "down"
    downloaded = invoke("datastore", "download", "data/in", str(down), "--datastore", "extra")
    assert downloaded.exit_code == 0, downloaded.output
    assert (down / "sub" / "b.txt").read_text() == "b"

    # --default switches the default datastore; uploads without --datastore go there
    assert invoke("datastore", "register", "third", "--root", str(tmp_path / "third"), "--default").exit_code == 0
    assert invoke("datastore", "upload", str(local / "a.txt"), "x").exit_code == 0
    assert ws.get_datastore("third").read_bytes("x/a.txt") == b"a"
    assert "third" in invoke("datastore", "list").stdout


def test_compute_attach_and_list(invoke: Invoke, ws: Workspace) -> None:
    result = invoke("compute", "attach", "box", "--kind", "local", "--config", "max_concurrent=2")
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke("compute", "list", "--json").stdout)
    assert [(c["name"], c["kind"], c["config"]) for c in listed] == [("box", "local", {"max_concurrent": 2})]
    assert "box" in invoke("compute", "list").stdout
    assert_one_line_error(invoke("compute", "attach", "gpu", "--kind", "quantum"), "quantum")


def test_secrets_never_print_values(invoke: Invoke, ws: Workspace) -> None:
    set_value = invoke("secret", "set", "db-password", "--value", "s3cr3t-value")
    piped = invoke("secret", "set", "api-key", input="piped-value\n")
    assert set_value.exit_code == 0 and piped.exit_code == 0, piped.output
    listed = invoke("secret", "list")
    listed_json = invoke("secret", "list", "--json")
    assert listed.stdout.split() == ["api-key", "db-password"]
    assert json.loads(listed_json.stdout) == ["api-key", "db-password"]
    for result in (set_value, piped, listed, listed_json, invoke("workspace", "show")):
        assert "s3cr3t" not in result.output and "piped-value" not in result.output
    assert ws.get_secret("api-key") == "piped-value"  # the trailing newline of stdin is not kept

    assert_one_line_error(invoke("secret", "set", "empty", input=""), "stdin")

    deleted = invoke("secret", "delete", "api-key")
    assert deleted.exit_code == 0, deleted.output
    assert invoke("secret", "list").stdout.split() == ["db-password"]
    assert_one_line_error(invoke("secret", "delete", "api-key"), "api-key")


def test_roles(invoke: Invoke, ws: Workspace) -> None:
    assigned = invoke("role", "assign", "bob", "reader")
    assert assigned.exit_code == 0, assigned.output
    assert "Reader" in assigned.stdout
    roles = json.loads(invoke("role", "list", "--json").stdout)
    assert {r["principal"]: r["role"] for r in roles} == {"alice": "Owner", "bob": "Reader"}
    assert invoke("role", "remove", "bob").exit_code == 0
    assert "bob" not in invoke("role", "list").stdout
    assert_one_line_error(invoke("role", "assign", "bob", "Emperor"), "Emperor")


def test_reader_cannot_write(invoke: Invoke, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("role", "assign", "bob", "Reader").exit_code == 0
    monkeypatch.setenv("AML_PRINCIPAL", "bob")
    assert invoke("secret", "list").exit_code == 0
    assert_one_line_error(invoke("secret", "set", "x", "--value", "y"), "bob")


def test_activity_list_and_show(invoke: Invoke, ws: Workspace) -> None:
    activity = ws.store.create_activity(WS, kind="image_build", target_id="img-1", message="Building")
    listed = json.loads(invoke("activity", "list", "--json").stdout)
    assert [a["activity_id"] for a in listed] == [activity.activity_id]
    assert json.loads(invoke("activity", "list", "--target", "other", "--json").stdout) == []
    shown = invoke("activity", "show", activity.activity_id)
    assert shown.exit_code == 0 and "Building" in shown.stdout and "image_build" in shown.stdout


def test_activity_wait_prints_progress_and_exits_by_the_end(invoke: Invoke, ws: Workspace) -> None:

    done = ws.store.create_activity(WS, kind="export", target_id="x", message="Queued")

    def progress() -> None:
        time.sleep(0.3)
        ws.store.update_activity(done.activity_id, status=ActivityStatus.RUNNING, progress=0.5, message="half way")
        time.sleep(1.5)  # longer than a poll (1 s)
        ws.store.update_activity(done.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0, message="done")

    writer = threading.Thread(target=progress)
    writer.start()
    result = invoke("activity", "wait", done.activity_id, "--timeout", "30")
    writer.join()
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].split() == ["NotStarted", "0%", "Queued"] and lines[-1].split() == ["Succeeded", "100%", "done"]
    assert any("half way" in line for line in lines)

    failed = ws.store.create_activity(WS, kind="export", target_id="y")
    ws.store.update_activity(failed.activity_id, status=ActivityStatus.FAILED, error="disk full")
    result = invoke("activity", "wait", failed.activity_id, "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["error"] == "disk full"
    still = ws.store.create_activity(WS, kind="export", target_id="z")
    timed_out = invoke("activity", "wait", still.activity_id, "--timeout", "0.2")
    assert timed_out.exit_code == 1 and "still NotStarted after 0.2 s" in timed_out.stderr


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "show", "no-such-run"), "no-such-run"),
        (("run", "logs", "no-such-run"), "no-such-run"),
        (("run", "metrics", "no-such-run"), "no-such-run"),
        (("run", "download", "no-such-run"), "no-such-run"),
        (("run", "cancel", "no-such-run"), "no-such-run"),
        (("run", "list", "-e", "no-such-exp"), "no-such-exp"),
        (("run", "best", "-e", "no-such-exp", "--metric", "m"), "no-such-exp"),
        (("run", "list", "-e", "bad name"), "Invalid experiment name"),
        (("workspace", "create", "bad/name"), "Invalid workspace name"),
        (("datastore", "register", "bad name", "--root", "/tmp/x"), "Invalid datastore name"),
        (("run", "list", "-e", "exp", "--status", "Sleeping"), "Sleeping"),
        (("run", "list", "-e", "exp", "--metric", "accuracy >> 1"), ">>"),
        (("run", "list", "-e", "exp", "--tag", "no-equals-sign"), "key=value"),
        (("run", "best", "-e", "exp", "--metric", "m", "--goal", "up"), "goal"),
        (("activity", "show", "no-such-activity"), "no-such-activity"),
        (("datastore", "upload", "/no/such/path", "x"), "/no/such/path"),
        (("datastore", "download", "x", "/tmp/y", "--datastore", "nope"), "nope"),
    ],
)
def test_errors_are_one_line(invoke: Invoke, ws: Workspace, args: tuple[str, ...], needle: str) -> None:
    finished_run(ws)  # experiment "exp" exists
    assert_one_line_error(invoke(*args), needle)


def test_unknown_workspace(invoke: Invoke) -> None:
    assert_one_line_error(invoke("run", "list", "-e", "exp", workspace="nowhere"), "nowhere")


def test_submit_input_errors(invoke: Invoke, ws: Workspace, src: Path, tmp_path: Path) -> None:
    (src / ".aml").mkdir()
    (src / ".aml" / "typo.runconfig.yml").write_text("scirpt: train.py\n")
    (tmp_path / "broken.yml").write_text("script: [unclosed\n  target: x\n")
    cases = [
        (("--run-config", "typo"), "unknown field 'scirpt'"),
        (("--run-config", str(tmp_path / "broken.yml")), "not valid YAML"),
        (("--run-config", "missing"), "does not exist"),
        ((), "exactly one of --script or --run-config"),
        (("--script", "train.py", "--run-config", "typo"), "exactly one"),
        (("--script", "missing.py"), "missing.py"),
        (("--script", "../escape.py"), "escape.py"),
        (("--script", "train.py", "--target", "nowhere"), "nowhere"),
        (("--script", "train.py", "--tag", "novalue"), "key=value"),
        (("--run-config", "typo", "--arg", "1"), "--arg"),
        (("--script", "train.py", "-e", "bad name"), "Invalid experiment name"),
    ]
    for options, needle in cases:
        assert_one_line_error(invoke("run", "submit", str(src), *options), needle)
    assert_one_line_error(invoke("run", "submit", str(tmp_path / "nowhere"), "--script", "train.py"), "nowhere")
    assert ws.experiments == {}  # nothing was created by a refused submission


def test_debug_env_shows_the_exception(invoke: Invoke, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_aml.exceptions import RunNotFoundError

    monkeypatch.setenv("AML_DEBUG", "1")
    result = invoke("run", "show", "no-such-run")
    assert result.exit_code == 1
    assert isinstance(result.exception, RunNotFoundError)


def test_usage_errors_keep_typer_behaviour(invoke: Invoke) -> None:
    result = invoke("run", "list")  # missing required --experiment
    assert result.exit_code == 2
    assert "--experiment" in result.output


# ------------------------------------------------------------------------------------------ as a newcomer types it
def test_an_empty_run_list_says_why(invoke: Invoke, ws: Workspace) -> None:
    sweep = finished_run(ws, "iris-train")  # a sweep parent: the metrics are on its children
    for accuracy in (0.8, 0.93, 0.95):
        finished_run(ws, accuracy=accuracy, parent=sweep)

    empty = invoke("run", "list", "-e", "iris-train", "--metric", "accuracy >= 0.9", "--order-by", "accuracy")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr.strip() == "0 of 1 top-level run matches; 2 child runs would: add --include-children"

    found = invoke("run", "list", "-e", "iris-train", "--metric", "accuracy >= 0.9", "--include-children", "--json")
    assert len(json.loads(found.stdout)) == 2 and found.stderr == ""
    assert len(json.loads(invoke("run", "list", "-e", "iris-train", "--children", "--json").stdout)) == 4

    none = invoke("run", "list", "-e", "iris-train", "--include-children", "--metric", "accuracy >= 0.99", "--json")
    assert json.loads(none.stdout) == []  # JSON stays JSON; the reason goes to stderr
    assert none.stderr.strip() == "0 of 4 runs match; no run matches --metric 'accuracy >= 0.99'"

    both = invoke("run", "list", "-e", "iris-train", "--include-children", "--status", "Failed", "--tag", "k=v")
    assert both.stderr.strip() == "0 of 4 runs match; no run matches --status Failed, --tag k=v"
    finished_run(ws, "iris-train", accuracy=0.5, tags={"k": "v"})
    finished_run(ws, "iris-train", accuracy=0.9)
    combined = invoke("run", "list", "-e", "iris-train", "--tag", "k=v", "--metric", "accuracy > 0.6")
    assert (
        combined.stderr.strip() == "0 of 3 top-level runs match; each filter matches some, but no run matches them all"
    )

    only_children = ws.experiment("nested").start_logging()
    finished_run(ws, "nested", parent=only_children)
    only_children.cancel()
    nested = invoke("run", "list", "-e", "nested", "--status", "Completed")
    assert nested.stderr.strip() == "0 of 1 top-level run matches; 1 child run would: add --include-children"


def test_not_found_errors_list_what_exists(invoke: Invoke, ws: Workspace) -> None:
    finished_run(ws, "iris-train")
    assert_one_line_error(
        invoke("run", "list", "-e", "iris"), "Experiment 'iris' not found", "existing experiments: iris-train"
    )
    assert_one_line_error(
        invoke("experiment", "list", workspace="nope"), "Workspace 'nope' not found", "existing workspaces: ws"
    )
    assert_one_line_error(
        invoke("deployments", "show", "svc"), "Deployment 'svc' not found", "no deployment exists yet"
    )
    assert_one_line_error(invoke("images", "show", "scorer"), "Image 'scorer' not found", "no image exists yet")
    assert_one_line_error(
        invoke("datastore", "download", "x", "out", "--datastore", "nope"),
        "Datastore 'nope' not found",
        "existing datastores: workspaceblobstore",
    )


def test_secret_set_checks_the_name_and_role_before_reading_a_value(
    invoke: Invoke, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing on stdin: the name is refused first, not the missing value.
    assert_one_line_error(invoke("secret", "set", "bad/name", input=""), "Invalid secret name 'bad/name'")
    assert_one_line_error(invoke("secret", "set", "deployment-svc-primary-key", input=""), "reserved")
    ws.assign_role("carl", "Contributor")
    monkeypatch.setenv("AML_PRINCIPAL", "carl")
    assert_one_line_error(invoke("secret", "set", "fine", input=""), "carl", "may not manage")
    monkeypatch.setenv("AML_PRINCIPAL", "alice")
    assert_one_line_error(invoke("secret", "set", "fine", input=""), "No value for secret 'fine' on stdin")


def test_control_characters_are_printed_as_escapes(invoke: Invoke, ws: Workspace) -> None:
    run = ws.experiment("exp").start_logging(display_name="fine")
    # What a failing script's stderr can put in a run's error: colours, a clear-screen, a bell.
    ws.store.update_run_status(run.id, RunStatus.FAILED, error="boom \x1b[31mred\x1b[0m \x1b[2J\x07 done")
    shown = invoke("run", "show", run.id)
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b[31mred\\x1b[0m" in shown.stdout and "\\x07" in shown.stdout
    data = json.loads(invoke("run", "show", run.id, "--json").stdout)
    assert data["error"] == "boom \x1b[31mred\x1b[0m \x1b[2J\x07 done"  # JSON carries the data as it is


def test_tag_and_display_name_limits(invoke: Invoke, ws: Workspace, src: Path) -> None:
    too_long = invoke("run", "submit", str(src), "--script", "train.py", "--tag", "k=" + "v" * 8001)
    assert_one_line_error(too_long, "tag 'k' is 8,001 characters long; at most 8,000")
    escape = invoke("run", "submit", str(src), "--script", "train.py", "--tag", "k=\x1b[2J")
    assert_one_line_error(escape, "tag 'k' holds control characters")
    name = invoke("run", "submit", str(src), "--script", "train.py", "--display-name", "x" * 257)
    assert_one_line_error(name, "Invalid display name", "at most 256 characters")
    assert ws.experiment("default").get_runs() == []  # refused before anything was written


def test_run_reap_with_nothing_lost(invoke: Invoke, ws: Workspace) -> None:
    finished_run(ws)
    result = invoke("run", "reap")
    assert result.exit_code == 0 and result.stdout == "" and "No lost run" in result.stderr
    assert json.loads(invoke("run", "reap", "--lost-after", "5", "--json").stdout) == []
