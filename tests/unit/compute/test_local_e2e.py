"""End to end through ``Workspace.submit``: a real supervisor process, SQLite store, local datastore."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_aml.entities import ActivityStatus, RunQuery, RunRecord, RunStatus
from airflow_aml.runconfig import EnvironmentSpec, RunConfiguration, SweepSpec
from airflow_aml.runtime.run import Run
from airflow_aml.workspace import Workspace

pytestmark = pytest.mark.slow

TIMEOUT = 120  # generous: a loaded CI machine starts Python slowly


def wait_for(run: Run, predicate=lambda r: r.status.is_terminal, timeout: float = TIMEOUT) -> RunRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = run.workspace.store.get_run(run.id)
        if predicate(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run.id} still {record.status} after {timeout}s:\n{run.get_log_text()}")
        time.sleep(0.2)


def wait_for_log(run: Run, needle: str, timeout: float = TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join(c.text for c in run.read_log() if c.stream == "stdout")
        if needle in text:
            return text
        if run.workspace.store.get_run(run.id).status.is_terminal:
            break
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared in the log of run {run.id}:\n{run.get_log_text()}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def no_leftover_runs(workspace: Workspace):
    """Never leave a supervisor running after a test, even a failed one."""
    yield
    for record in workspace.store.search_runs(workspace.name, RunQuery()):
        if not record.status.is_terminal:
            Run(workspace, record).cancel()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(r.status.is_terminal for r in workspace.store.search_runs(workspace.name, RunQuery())):
            return
        time.sleep(0.2)


def write(folder: Path, name: str, code: str) -> None:
    (folder / name).write_text(textwrap.dedent(code))


def test_completed_run_uploads_outputs_and_streams_logs(workspace: Workspace, src: Path, aml_home: Path) -> None:
    write(src, "train.py", """
        import json, os, sys
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        run.log("accuracy", 0.93)
        run.flush()
        os.makedirs("outputs/model", exist_ok=True)
        with open("outputs/model/weights.txt", "w") as f:
            f.write("w=1")
        env = {k: os.environ.get(k) for k in ("AML_RUN_ID", "AML_PRINCIPAL", "AML_PARENT_RUN_ID", "GREETING",
                                              "PYTHONUNBUFFERED")}
        print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": env}))
        print("a warning", file=sys.stderr)
    """)
    config = RunConfiguration(script="train.py", arguments=["--epochs", 3],
                              environment_variables={"GREETING": "hello"})
    run = workspace.experiment("exp").submit(src, config)
    record = wait_for(run)
    assert record.status is RunStatus.COMPLETED, record.error
    assert record.error is None

    report = json.loads(wait_for_log(run, "argv").splitlines()[0])
    assert report["argv"] == ["--epochs", "3"]
    assert report["cwd"] == str(aml_home / "runs" / run.id / "work")
    assert report["env"] == {"AML_RUN_ID": run.id, "AML_PRINCIPAL": "alice", "AML_PARENT_RUN_ID": None,
                             "GREETING": "hello", "PYTHONUNBUFFERED": "1"}
    assert not (src / "outputs").exists()  # the user's folder is never the work folder

    files = run.get_file_names()
    assert "outputs/model/weights.txt" in files and "logs/driver_log.txt" in files
    ds = workspace.get_default_datastore()
    assert ds.read_bytes(f"runs/{run.id}/outputs/model/weights.txt") == b"w=1"
    driver_log = ds.read_bytes(f"runs/{run.id}/logs/driver_log.txt").decode()
    assert '"argv"' in driver_log and "a warning" in driver_log

    streams = {chunk.stream for chunk in run.read_log()}
    assert streams == {"stdout", "stderr", "control"}
    control = "".join(c.text for c in run.read_log() if c.stream == "control")
    assert "Extracting snapshot" in control and "Starting script" in control and "Run Completed" in control
    assert run.get_metrics()["accuracy"] == 0.93

    activity = workspace.get_activity(run.id)
    assert activity.status is ActivityStatus.SUCCEEDED and activity.progress == 1.0
    assert record.properties["local.host"]
    assert int(record.properties["local.supervisor_pid"]) > 0


def test_failing_script_fails_with_stderr_tail(workspace: Workspace, src: Path) -> None:
    write(src, "bad.py", """
        print("starting")
        raise ValueError("bad input 42")
    """)
    run = workspace.experiment("exp").submit(src, RunConfiguration(script="bad.py"))
    record = wait_for(run)
    assert record.status is RunStatus.FAILED
    assert "'bad.py'" in record.error and "exited with code 1" in record.error
    assert "ValueError: bad input 42" in record.error
    activity = workspace.get_activity(run.id)
    assert activity.status is ActivityStatus.FAILED and activity.progress == 1.0
    assert "logs/driver_log.txt" in run.get_file_names()


SPAWNER = """
    import subprocess, sys, time
    child = subprocess.Popen(["sleep", "300"])
    print("grandchild", child.pid, flush=True)
    time.sleep(300)
"""


def test_cancel_kills_the_process_tree(workspace: Workspace, src: Path) -> None:
    write(src, "spawn.py", SPAWNER)
    run = workspace.experiment("exp").submit(src, RunConfiguration(script="spawn.py"))
    grandchild = int(wait_for_log(run, "grandchild").split("grandchild")[1].split()[0])
    assert alive(grandchild)
    assert workspace.store.get_run(run.id).status is RunStatus.RUNNING
    started = time.monotonic()
    run.cancel()
    record = wait_for(run)
    assert record.status is RunStatus.CANCELED
    assert time.monotonic() - started < 30
    assert not alive(grandchild)
    assert workspace.get_activity(run.id).status is ActivityStatus.CANCELED


def test_cancel_flag_alone_is_noticed(workspace: Workspace, src: Path) -> None:
    """A cancel from another machine only sets the flag (no SIGTERM): the supervisor polls it."""
    write(src, "spawn.py", SPAWNER)
    run = workspace.experiment("exp").submit(src, RunConfiguration(script="spawn.py"))
    grandchild = int(wait_for_log(run, "grandchild").split("grandchild")[1].split()[0])
    workspace.store.request_cancel(run.id)
    assert wait_for(run).status is RunStatus.CANCELED
    assert not alive(grandchild)


def test_max_run_duration_fails_the_run(workspace: Workspace, src: Path) -> None:
    write(src, "slow.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n")
    run = workspace.experiment("exp").submit(
        src, RunConfiguration(script="slow.py", max_run_duration_seconds=2)
    )
    record = wait_for(run)
    assert record.status is RunStatus.FAILED
    assert "max_run_duration_seconds=2" in record.error
    assert record.duration_seconds is not None and record.duration_seconds < 60


def test_logs_are_readable_while_the_script_runs(workspace: Workspace, src: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    write(src, "wait.py", """
        import os, time
        print("first line", flush=True)
        while not os.path.exists(os.environ["GO_FILE"]):
            time.sleep(0.05)
        print("second line")
    """)
    config = RunConfiguration(script="wait.py", environment_variables={"GO_FILE": str(go)})
    run = workspace.experiment("exp").submit(src, config)
    text = wait_for_log(run, "first line")
    assert "second line" not in text
    assert workspace.store.get_run(run.id).status is RunStatus.RUNNING
    go.touch()
    assert wait_for(run).status is RunStatus.COMPLETED
    assert "second line" in wait_for_log(run, "second line")


def test_sweep_runs_one_child_per_grid_point(workspace: Workspace, src: Path) -> None:
    write(src, "sweep.py", """
        import argparse, os
        from airflow_aml.runtime.run import Run
        parser = argparse.ArgumentParser()
        parser.add_argument("--base")
        parser.add_argument("--lr", type=float)
        parser.add_argument("--layers", type=int)
        args = parser.parse_args()
        run = Run.get_context()
        run.log("score", args.lr * args.layers)
        run.flush()
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/args.txt", "w") as f:
            f.write(f"{args.base} {args.lr} {args.layers} {os.environ['AML_PARENT_RUN_ID']}")
    """)
    config = RunConfiguration(
        script="sweep.py", arguments=["--base", "x"],
        sweep=SweepSpec(grid={"lr": (0.1, 0.2), "layers": (1, 2)}, max_concurrent=2),
    )
    parent = workspace.experiment("sweep").submit(src, config)
    record = wait_for(parent)
    assert record.status is RunStatus.COMPLETED, record.error
    children = workspace.store.search_runs(workspace.name, RunQuery(parent_run_id=parent.id))
    assert len(children) == 4
    assert sorted((c.tags["sweep.lr"], c.tags["sweep.layers"]) for c in children) == [
        ("0.1", "1"), ("0.1", "2"), ("0.2", "1"), ("0.2", "2")
    ]
    ds = workspace.get_default_datastore()
    for child in children:
        assert child.status is RunStatus.COMPLETED
        assert child.run_config["sweep"] is None
        assert child.run_config["arguments"][:2] == ["--base", "x"]
        written = ds.read_bytes(f"runs/{child.run_id}/outputs/args.txt").decode()
        assert written == f"x {child.tags['sweep.lr']} {child.tags['sweep.layers']} {parent.id}"
    best = workspace.experiment("sweep").best_run("score", parent_run_id=parent.id)
    assert best is not None and best.record.tags == {"sweep.lr": "0.2", "sweep.layers": "2"}
    activity = workspace.get_activity(parent.id)
    assert activity.status is ActivityStatus.SUCCEEDED
    assert "4/4 child runs finished" in parent.get_log_text()


def test_sweep_with_a_failing_child_fails_naming_it(workspace: Workspace, src: Path) -> None:
    write(src, "maybe.py", """
        import sys
        sys.exit(int(sys.argv[sys.argv.index("--fail") + 1]))
    """)
    config = RunConfiguration(script="maybe.py", sweep=SweepSpec(grid={"fail": (0, 1)}))
    parent = workspace.experiment("sweep").submit(src, config)
    record = wait_for(parent)
    assert record.status is RunStatus.FAILED
    children = {c.tags["sweep.fail"]: c for c in
                workspace.store.search_runs(workspace.name, RunQuery(parent_run_id=parent.id))}
    assert children["0"].status is RunStatus.COMPLETED
    assert children["1"].status is RunStatus.FAILED
    assert children["1"].run_id in record.error and children["0"].run_id not in record.error


def test_canceling_a_sweep_cancels_its_children(workspace: Workspace, src: Path) -> None:
    write(src, "spawn.py", SPAWNER)
    config = RunConfiguration(script="spawn.py", sweep=SweepSpec(grid={"i": (1, 2, 3)}, max_concurrent=2))
    parent = workspace.experiment("sweep").submit(src, config)
    wait_for(parent, lambda r: len(workspace.store.search_runs(
        workspace.name, RunQuery(parent_run_id=parent.id, statuses=(RunStatus.RUNNING,)))) == 2)
    parent.cancel()
    assert wait_for(parent).status is RunStatus.CANCELED
    children = workspace.store.search_runs(workspace.name, RunQuery(parent_run_id=parent.id))
    assert sorted(c.status for c in children) == [RunStatus.CANCELED] * 3


def test_failing_environment_build_fails_the_run_with_uv_output(workspace: Workspace, src: Path) -> None:
    write(src, "train.py", "print('never')\n")
    config = RunConfiguration(
        script="train.py",
        environment=EnvironmentSpec(kind="virtualenv", pip=("no-such-package-aml-test-xyz==9.9.9",)),
    )
    run = workspace.experiment("exp").submit(src, config)
    record = wait_for(run)
    assert record.status is RunStatus.FAILED
    assert "EnvironmentBuildError" in record.error and "no-such-package-aml-test-xyz" in record.error
    assert "uv" in "".join(c.text for c in run.read_log() if c.stream == "control")


def test_virtualenv_run_uses_its_own_interpreter(workspace: Workspace, src: Path, aml_home: Path) -> None:
    write(src, "env.yml", "dependencies:\n  - pip:\n    - six\n")
    write(src, "venv.py", """
        import sys, six
        from airflow_aml.runtime.run import Run
        Run.get_context().log("ok", 1)
        print(sys.prefix)
    """)
    config = RunConfiguration(script="venv.py", environment=EnvironmentSpec(kind="virtualenv", conda_file="env.yml"))
    run = workspace.experiment("exp").submit(src, config)
    record = wait_for(run)
    assert record.status is RunStatus.COMPLETED, record.error
    assert wait_for_log(run, str(aml_home / "envs")).strip().startswith(str(aml_home / "envs"))


# ------------------------------------------------------------------ the supervisor CLI directly
def supervise(workspace: Workspace, run_id: str, aml_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AML_STORE_URI": workspace.store_uri, "AML_HOME": str(aml_home)}
    return subprocess.run(
        [sys.executable, "-m", "airflow_aml.compute.run_supervisor", "--run-id", run_id, "--workspace", workspace.name],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def test_supervisor_error_marks_the_run_failed(workspace: Workspace, aml_home: Path) -> None:
    record = workspace.store.create_run(workspace=workspace.name, experiment="exp", submitted_by="alice",
                                        compute_target="local", run_config={"script": "train.py"})
    result = supervise(workspace, record.run_id, aml_home)  # no snapshot was ever uploaded
    assert result.returncode == 1
    failed = workspace.store.get_run(record.run_id)
    assert failed.status is RunStatus.FAILED
    assert "snapshot.zip" in failed.error


def test_run_canceled_before_its_supervisor_started(workspace: Workspace, aml_home: Path) -> None:
    record = workspace.store.create_run(workspace=workspace.name, experiment="exp", submitted_by="alice",
                                        compute_target="local", run_config={"script": "train.py"})
    workspace.store.request_cancel(record.run_id)
    result = supervise(workspace, record.run_id, aml_home)
    assert result.returncode == 1, result.stderr
    assert workspace.store.get_run(record.run_id).status is RunStatus.CANCELED


def test_cancel_of_a_run_whose_supervisor_died_ends_it(workspace: Workspace) -> None:
    from airflow_aml.compute import build_compute_target

    dead = subprocess.Popen(["true"])
    dead.wait()
    record = workspace.store.create_run(workspace=workspace.name, experiment="exp", submitted_by="alice",
                                        compute_target="local", run_config={"script": "train.py"},
                                        status=RunStatus.RUNNING)
    workspace.store.add_run_properties(record.run_id, {"local.supervisor_pid": str(dead.pid),
                                                       "local.host": socket.gethostname()})
    build_compute_target(workspace, "local").cancel(record.run_id)
    ended = workspace.store.get_run(record.run_id)
    assert ended.status is RunStatus.CANCELED
    assert "no longer running" in ended.error


def test_run_outlives_the_process_that_submitted_it(workspace: Workspace, src: Path, tmp_path: Path) -> None:
    """An Airflow task that defers exits right after submit: the supervisor must carry on alone."""
    write(src, "train.py", "import time\ntime.sleep(1)\nprint('done')\n")
    submitter = textwrap.dedent(f"""
        from airflow_aml.runconfig import RunConfiguration
        from airflow_aml.workspace import Workspace
        ws = Workspace.get({workspace.name!r}, store_uri={workspace.store_uri!r})
        print(ws.experiment("exp").submit({str(src)!r}, RunConfiguration(script="train.py")).id)
    """)
    result = subprocess.run([sys.executable, "-c", submitter], capture_output=True, text=True, timeout=TIMEOUT,
                            check=True)
    run = workspace.get_run(result.stdout.strip().splitlines()[-1])
    assert not workspace.store.get_run(run.id).status.is_terminal  # the submitter did not wait
    record = wait_for(run)
    assert record.status is RunStatus.COMPLETED, record.error
    assert "done" in wait_for_log(run, "done")


def test_cancel_right_after_submit(workspace: Workspace, src: Path) -> None:
    """SIGTERM reaches the supervisor while Python is still importing: it must not be lost or fatal."""
    write(src, "train.py", "import time\ntime.sleep(300)\n")
    run = workspace.experiment("exp").submit(src, RunConfiguration(script="train.py"))
    run.cancel()
    record = wait_for(run, timeout=60)
    assert record.status is RunStatus.CANCELED
    assert workspace.get_activity(run.id).status is ActivityStatus.CANCELED
