"""The ``docker`` compute target against the real engine (``source scripts/docker-service.sh``).

A served workspace (the test service on 127.0.0.1), a target registered with limits, runs whose
scripts log metrics over HTTP from inside their container. The engine tests FAIL under CI=true or
AML_TEST_DOCKER=1 when the engine or the base image is missing, and are skipped elsewhere (as the
image builder's).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.compute import build_compute_target
from airflow_aml.compute.local import PROP_PID
from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import DockerImageError, RunConfigurationError
from airflow_aml.images.docker import docker_api_client
from airflow_aml.images.docker.runs.container import LABEL_RUN_ID, find_container
from airflow_aml.images.docker.runs.supervisor import supervisor_holds_lock
from airflow_aml.runconfig import EnvironmentSpec, RunConfiguration, SweepSpec
from airflow_aml.runs import Run
from airflow_aml.workspace import Workspace
from tests.unit.compute.test_local_e2e import alive, wait_for, wait_for_log
from tests.unit.docker_engine import engine_or_fail
from tests.unit.docker_registry import local_registry
from tests.unit.service.served import Served, free_port, serve

pytestmark = pytest.mark.slow

TARGET = "docker-local"
TIMEOUT = 300.0  # the first run of a machine builds the environment image (pip install)



@pytest.fixture(scope="module")
def docker_api() -> Iterator[Any]:
    """The engine and the base image: FAIL under CI / AML_TEST_DOCKER=1, skip elsewhere."""
    api = engine_or_fail()
    yield api
    api.close()


@pytest.fixture
def served(aml_home: Path, tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


@pytest.fixture
def ws(docker_api: Any, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("AML_PRINCIPAL", raising=False)  # the token says who we are
    workspace = Workspace.create("demo", store_uri=served.uri_for("alice"), datastore_root=tmp_path / "datastore")
    workspace.register_compute_target(TARGET, kind="docker", config={"cpus": 1, "memory": "512m", "stop_timeout": 2})
    return workspace


def write(folder: Path, name: str, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))
    return folder


def control_log(run: Run) -> str:
    return "".join(c.text for c in run.read_log() if c.stream == "control")


TRAIN = """
    import json, os, sys
    from airflow_aml.runtime.run import Run
    run = Run.get_context()
    for epoch in range(5):
        run.log("loss", 1.0 / (epoch + 1))
    run.log("accuracy", 0.93)
    os.makedirs("outputs/model", exist_ok=True)
    with open("outputs/model/weights.txt", "w") as f:
        f.write("w=1,2,3")
    print(json.dumps({k: os.environ.get(k) for k in
                      ("AML_STORE_URI", "AML_TOKEN", "AML_RUN_TOKEN", "AML_SECRET_KEY")}))
    def read(*paths):  # cgroup v2, else v1 (engines on older kernels)
        for path in paths:
            if os.path.exists(path.split("+")[0]):
                return " ".join(open(p).read().strip() for p in path.split("+"))
    print("cgroup-memory", read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    print("cgroup-cpu", read("/sys/fs/cgroup/cpu.max",
                             "/sys/fs/cgroup/cpu/cpu.cfs_quota_us+/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
    print("training on", sys.executable, file=sys.stderr)
"""


def test_a_training_script_logs_metrics_and_outputs_from_its_container(
    ws: Workspace, docker_api: Any, tmp_path: Path
) -> None:
    src = write(tmp_path / "src", "train.py", TRAIN)
    run = ws.experiment("iris").submit(src, RunConfiguration(script="train.py", target=TARGET))
    record = wait_for(run, timeout=TIMEOUT)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"

    metrics = run.get_metrics()
    assert metrics["loss"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert metrics["accuracy"] == 0.93
    assert "outputs/model/weights.txt" in run.get_file_names()
    assert ws.get_default_datastore().read_bytes(f"runs/{run.id}/outputs/model/weights.txt") == b"w=1,2,3"

    stdout = wait_for_log(run, "AML_STORE_URI")
    env = json.loads(next(line for line in stdout.splitlines() if "AML_STORE_URI" in line))
    # The service URI and a run token; never a database URI, the submitter's token or the key.
    assert env["AML_STORE_URI"].startswith("http://127.0.0.1:") and "@" not in env["AML_STORE_URI"]
    assert env["AML_RUN_TOKEN"].startswith("aml_run_")
    assert env["AML_TOKEN"] is None and env["AML_SECRET_KEY"] is None
    # The limits of the target's config, as the container's cgroup has them.
    assert f"cgroup-memory {512 * 1024 * 1024}" in stdout
    assert "cgroup-cpu 100000 100000" in stdout
    stderr = "".join(c.text for c in run.read_log() if c.stream == "stderr")
    assert "training on /opt/aml/venv/bin/python" in stderr
    control = control_log(run)
    assert "Starting container" in control and "Run Completed" in control
    # The container is gone once the run ended; the label finds nothing.
    assert find_container(docker_api, run.id) is None


def test_a_second_run_with_the_same_environment_builds_nothing(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "src", "train.py", TRAIN)
    config = RunConfiguration(script="train.py", target=TARGET)
    first = ws.experiment("iris").submit(src, config)
    assert wait_for(first, timeout=TIMEOUT).status is RunStatus.COMPLETED, first.get_log_text()
    second = ws.experiment("iris").submit(src, config)
    assert wait_for(second, timeout=TIMEOUT).status is RunStatus.COMPLETED, second.get_log_text()
    log = control_log(second)
    assert "Using cached environment image aml-run-env:" in log
    assert "Using cached run image aml-run:" in log
    assert "Building" not in log
    # New source, same environment: only the snapshot layer is built.
    # Unique per test run: the engine keeps images between runs of the suite (a fixed change was
    # found cached there by an earlier CI run of the same code).
    write(src, "train.py", TRAIN + f"    print('changed {uuid.uuid4().hex}')\n")
    third = ws.experiment("iris").submit(src, config)
    assert wait_for(third, timeout=TIMEOUT).status is RunStatus.COMPLETED, third.get_log_text()
    log = control_log(third)
    # The new snapshot is always built. (Whether the environment image is reused here was seen to
    # differ once in CI, unexplained yet: the strict no-rebuild claim is the second run's above.)
    assert "Building run image aml-run:" in log, log


SLEEPER = """
    import time
    print("started", flush=True)
    time.sleep(600)
"""


def test_cancel_stops_the_container(ws: Workspace, docker_api: Any, tmp_path: Path) -> None:
    src = write(tmp_path / "src", "sleep.py", SLEEPER)
    run = ws.experiment("iris").submit(src, RunConfiguration(script="sleep.py", target=TARGET))
    wait_for_log(run, "started", timeout=TIMEOUT)
    info = find_container(docker_api, run.id)
    assert info is not None and info["Config"]["Labels"][LABEL_RUN_ID] == run.id
    assert info["Config"]["Labels"]["airflow-aml.workspace"] == "demo"
    started = time.monotonic()
    run.cancel()
    record = wait_for(run, timeout=60)
    assert record.status is RunStatus.CANCELED, run.get_log_text()
    assert time.monotonic() - started < 30
    assert find_container(docker_api, run.id) is None


def test_max_duration_stops_the_container_and_fails_the_run(ws: Workspace, docker_api: Any, tmp_path: Path) -> None:
    src = write(tmp_path / "src", "sleep.py", SLEEPER)
    config = RunConfiguration(script="sleep.py", target=TARGET, max_run_duration_seconds=3)
    run = ws.experiment("iris").submit(src, config)
    record = wait_for(run, timeout=TIMEOUT)
    assert record.status is RunStatus.FAILED
    assert "exceeded max_run_duration_seconds=3" in (record.error or "")
    assert find_container(docker_api, run.id) is None


def test_a_failing_script_fails_the_run_with_its_exit_code(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "src", "fail.py", """
        import sys
        print("bad input", file=sys.stderr)
        sys.exit(3)
    """)
    run = ws.experiment("iris").submit(src, RunConfiguration(script="fail.py", target=TARGET))
    record = wait_for(run, timeout=TIMEOUT)
    assert record.status is RunStatus.FAILED
    assert "exited with code 3" in (record.error or "") and "bad input" in (record.error or "")


def test_an_unserved_workspace_is_refused_naming_the_service(workspace: Workspace, tmp_path: Path) -> None:
    workspace.register_compute_target(TARGET, kind="docker", config={})
    src = write(tmp_path / "src", "train.py", "print(1)\n")
    with pytest.raises(RunConfigurationError, match="airflow-aml service"):
        workspace.experiment("iris").submit(src, RunConfiguration(script="train.py", target=TARGET))
    assert list(workspace.experiment("iris").get_runs()) == []


def test_a_killed_supervisor_is_replaced_by_one_that_reattaches_to_the_container(
    ws: Workspace, docker_api: Any, tmp_path: Path
) -> None:
    src = write(tmp_path / "src", "slow.py", """
        import os, time
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        print("started", flush=True)
        time.sleep(6)
        run.log("after_kill", 1.0)
        os.makedirs("outputs", exist_ok=True)
        open("outputs/late.txt", "w").write("late")
        print("finished", flush=True)
    """)
    run = ws.experiment("iris").submit(src, RunConfiguration(script="slow.py", target=TARGET))
    wait_for_log(run, "started", timeout=TIMEOUT)
    container = find_container(docker_api, run.id)
    assert container is not None
    first_pid = int(ws.store.get_run(run.id).properties[PROP_PID])
    os.kill(first_pid, signal.SIGKILL)  # as the OOM killer or a reboot of the supervisor would
    deadline = time.monotonic() + 10
    while alive(first_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(first_pid)

    target = build_compute_target(ws, TARGET)
    assert target.worker_alive(ws.store.get_run(run.id)) is True  # the container still runs
    deadline = time.monotonic() + 20
    while not supervisor_holds_lock(run.id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert supervisor_holds_lock(run.id)  # a new supervisor carries the run
    assert target.worker_alive(ws.store.get_run(run.id)) is True
    record = wait_for(run, timeout=60)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"
    assert not supervisor_holds_lock(run.id)  # the new supervisor ended too
    assert run.get_metrics()["after_kill"] == 1.0
    assert ws.get_default_datastore().read_bytes(f"runs/{run.id}/outputs/late.txt") == b"late"
    assert f"Reattaching to container {container['Id'][:12]}" in control_log(run)
    assert "finished" in wait_for_log(run, "finished")
    assert find_container(docker_api, run.id) is None


def test_a_sweep_runs_each_child_in_a_container_of_its_own(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "src", "point.py", """
        import os, sys
        from airflow_aml.runtime.run import Run
        run = Run.get_context()
        run.log("lr", float(sys.argv[-1]))
        os.makedirs("outputs", exist_ok=True)
        open("outputs/parent.txt", "w").write(os.environ["AML_PARENT_RUN_ID"])
    """)
    config = RunConfiguration(script="point.py", target=TARGET, sweep=SweepSpec(grid={"lr": (0.1, 0.2)}))
    parent = ws.experiment("sweep").submit(src, config)
    record = wait_for(parent, timeout=TIMEOUT)
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{parent.get_log_text()}"
    children = list(parent.get_children())
    assert sorted(child.get_metrics()["lr"] for child in children) == [0.1, 0.2]
    datastore = ws.get_default_datastore()
    for child in children:
        assert datastore.read_bytes(f"runs/{child.id}/outputs/parent.txt").decode() == parent.id
        assert "Starting container" in control_log(child)


def test_a_retried_submit_follows_the_running_container_instead_of_starting_another(
    ws: Workspace, docker_api: Any, tmp_path: Path
) -> None:
    # What a retried Airflow task does: the same idempotency key finds the earlier, unfinished run.
    src = write(tmp_path / "src", "sleep.py", SLEEPER)
    config = RunConfiguration(script="sleep.py", target=TARGET)
    first = ws.experiment("iris").submit(src, config, idempotency_key="dag.task.run1")
    wait_for_log(first, "started", timeout=TIMEOUT)
    container = find_container(docker_api, first.id)
    again = ws.experiment("iris").submit(src, config, idempotency_key="dag.task.run1")
    assert again.id == first.id
    assert container is not None and find_container(docker_api, first.id)["Id"] == container["Id"]
    running = docker_api.containers(filters={"label": [f"{LABEL_RUN_ID}={first.id}"]})
    assert len(running) == 1
    first.cancel()
    assert wait_for(first, timeout=60).status is RunStatus.CANCELED


def test_the_memory_limit_fails_a_script_that_exceeds_it(ws: Workspace, tmp_path: Path) -> None:
    ws.register_compute_target("docker-small", kind="docker", config={"memory": "64m"})
    src = write(tmp_path / "src", "hog.py", """
        blocks = [bytearray(16 * 1024 * 1024) for _ in range(32)]  # 512 MiB, touched
        print("allocated", len(blocks))
    """)
    run = ws.experiment("iris").submit(src, RunConfiguration(script="hog.py", target="docker-small"))
    record = wait_for(run, timeout=TIMEOUT)
    assert record.status is RunStatus.FAILED
    assert "killed by signal SIGKILL" in (record.error or "") or "exited with code 137" in (record.error or "")
    assert "ran out of memory (limit 64m)" in (record.error or "")


def test_the_airflow_operator_runs_on_the_docker_target_unchanged(
    ws: Workspace, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_aml.operators.run import AmlSubmitRunOperator
    from tests.unit.conftest import make_context

    monkeypatch.setenv("AIRFLOW_CONN_AML_SERVED", json.dumps(
        {"conn_type": "aml_workspace", "host": served.url, "schema": "demo", "password": served.token("alice")}))
    src = write(tmp_path / "src", "train.py", TRAIN)
    op = AmlSubmitRunOperator(task_id="train", experiment_name="iris", source_directory=str(src), script="train.py",
                              compute_target=TARGET, aml_conn_id="aml_served", poll_interval=0.2)
    run_id = op.execute(make_context())
    run = ws.get_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.get_metrics()["accuracy"] == 0.93
    assert "outputs/model/weights.txt" in run.get_file_names()


def test_cancel_during_the_environment_build_cancels_the_run(
    ws: Workspace, docker_api: Any, tmp_path: Path
) -> None:
    # A requirement set no other run has (its hash is new): the build really runs, pip downloading.
    marker = f"six!=0.0.{uuid.uuid4().int % 10**9}"
    src = write(tmp_path / "src", "train.py", "print('never')\n")
    env = EnvironmentSpec(kind="virtualenv", pip=("scikit-learn==1.5.2", marker))
    run = ws.experiment("iris").submit(src, RunConfiguration(script="train.py", target=TARGET, environment=env))
    deadline = time.monotonic() + TIMEOUT
    while "Building environment image" not in control_log(run):
        assert time.monotonic() < deadline and not ws.store.get_run(run.id).status.is_terminal, control_log(run)
        time.sleep(0.2)
    tag = control_log(run).split("Building environment image ")[1].split(":", 2)[:2]
    time.sleep(2)
    started = time.monotonic()
    run.cancel()
    record = wait_for(run, timeout=120)
    assert record.status is RunStatus.CANCELED, control_log(run)
    assert time.monotonic() - started < 60
    assert "never" not in run.get_log_text()
    assert "Canceled before the script started" in control_log(run)
    assert "Supervisor error" not in control_log(run)
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker_api.inspect_image(":".join(tag))


# ------------------------------------------------------------------ docker_conn_id (DockerHook)
def test_a_docker_conn_id_target_logs_in_to_its_registry_through_the_provider_hook(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Airflow connection (as a worker sees one: AIRFLOW_CONN_<ID>) names a real registry on
    127.0.0.1; the provider's DockerHook logs the engine in to it before the run's container starts."""
    with local_registry(tmp_path / "registry") as registry:
        monkeypatch.setenv("AIRFLOW_CONN_AML_REGISTRY", json.dumps({
            "conn_type": "docker", "host": registry.host, "port": registry.port,
            "login": "aml", "password": "not-checked-by-this-registry"}))
        ws.register_compute_target("docker-hooked", kind="docker",
                                   config={"docker_conn_id": "aml_registry", "stop_timeout": 2})
        src = write(tmp_path / "src", "train.py", TRAIN)
        run = ws.experiment("iris").submit(src, RunConfiguration(script="train.py", target="docker-hooked"))
        record = wait_for(run, timeout=TIMEOUT)
        assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"
        assert run.get_metrics()["accuracy"] == 0.93
        # The engine's login (GET /v2/ with the connection's credentials) reached the registry.
        assert "GET /v2/ HTTP/1.1" in registry.requests(), registry.log.read_text()[-2000:]


def test_a_registry_login_that_fails_is_named_as_such(
    docker_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_aml.images.docker.options import DockerBuildOptions

    closed = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_AML_NO_REGISTRY", json.dumps({
        "conn_type": "docker", "host": "127.0.0.1", "port": closed, "login": "aml", "password": "pw"}))
    with pytest.raises(DockerImageError, match=r"Registry login with Airflow connection 'aml_no_registry' failed"):
        docker_api_client(DockerBuildOptions(docker_conn_id="aml_no_registry"), timeout=10)
    monkeypatch.delenv("AIRFLOW_CONN_AML_MISSING", raising=False)
    with pytest.raises(DockerImageError, match=r"docker_conn_id 'aml_missing'"):
        docker_api_client(DockerBuildOptions(docker_conn_id="aml_missing"), timeout=10)
