"""The ``docker`` deployment target: replicas as containers, against a real Docker engine.

One small image (an entry script, no model framework: a quick build) is built for the module with
the docker image builder. The engine tests need a Docker engine and the registry-less base image
(as root, ``source scripts/docker-service.sh``); without them they FAIL under CI=true or
AML_TEST_DOCKER=1 and are skipped elsewhere, as the image builder's tests are. Containers use the
host's network and the tests talk to 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.deployments.replicas import ReplicaSpec, build_replica_driver, free_port, wait_until
from airflow_aml.deployments.replicas.containers import ContainerReplica, ContainerReplicaDriver, container_name
from airflow_aml.entities import ImageRecord, ImageStatus
from airflow_aml.exceptions import DeploymentError, ValidationError
from airflow_aml.images.docker import (
    DockerBuildOptions,
    DockerImageBuilder,
    remove_image,
)
from airflow_aml.runtime.scoring import ScoringConfig, generate_key, hash_key
from tests.unit.docker_engine import engine_or_fail

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
WORKSPACE = "ws-test"
INIT_MARKER = "aml-test-replica: init() done"
SCORE_PY = f"""\
import json


def init():
    print({INIT_MARKER!r}, flush=True)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {{"sums": [sum(row) for row in rows]}}
"""
_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


# ------------------------------------------------------------------------------------ helpers


def image_record(builder: str = "docker", location: str | None = None, **kw: Any) -> ImageRecord:
    now = datetime.now(UTC)
    return ImageRecord(
        workspace=WORKSPACE, name=kw.pop("name", "echo-svc"), version=kw.pop("version", 1),
        status=ImageStatus.SUCCEEDED, builder=builder, created_at=now, created_by="test", updated_at=now,
        location=location, **kw,
    )


def write_config(config_dir: Path, config: ScoringConfig | str, *, mode: int = 0o644) -> None:
    """``scoring.json`` replaced atomically (temp file + rename), as the supervisor rotates keys."""
    text = config if isinstance(config, str) else config.model_dump_json(exclude_none=True)
    fd, tmp = tempfile.mkstemp(prefix=".scoring.json.", dir=config_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, config_dir / "scoring.json")


def make_spec(
    driver: ContainerReplicaDriver, image: ImageRecord, root: Path, *, deployment: str, generation: int = 1,
    index: int = 0, **kw: Any,
) -> ReplicaSpec:
    return ReplicaSpec(
        workspace=WORKSPACE, deployment=deployment, generation=generation, index=index, port=free_port(),
        image=driver.image_payload(image), config_dir=root / "config",
        log_path=root / "logs" / f"r{generation}-{index}.log",
        **kw,
    )


def score(replica: ContainerReplica, key: str | None, rows: list[list[float]]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{replica.url}/score", data=json.dumps({"data": rows}).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(replica: ContainerReplica, timeout: float = 90) -> None:
    """Until GET /ready answers 200; fails at once, with the replica's log, if the container ends."""
    deadline = time.monotonic() + timeout
    while True:
        assert replica.alive(), f"{replica.exit_description()}:\n{replica.spec.log_path.read_text(errors='replace')}"
        try:
            with urllib.request.urlopen(f"{replica.url}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"not ready after {timeout} s:\n{replica.spec.log_path.read_text()}"
        time.sleep(0.3)


def container_ids(api: Any, deployment: str) -> set[str]:
    found = api.containers(all=True, filters={"label": [f"aml.deployment={deployment}"]})
    return {item["Id"] for item in found}


# ----------------------------------------------------------------------------- no engine needed


def test_container_names_are_docker_safe_readable_and_unique(tmp_path: Path) -> None:
    spec = ReplicaSpec(
        workspace="Team A/ü", deployment="iris svc", generation=3, index=2, port=1, image={}, config_dir=tmp_path,
        log_path=tmp_path / "log",
    )
    first, second = container_name(spec), container_name(spec)
    assert _DOCKER_NAME.match(first), first
    assert first.startswith("aml-Team-A-iris-svc-g3-r2-")
    assert first != second


def test_registered_as_the_docker_target() -> None:
    driver = build_replica_driver("docker")
    assert isinstance(driver, ContainerReplicaDriver) and driver.kind == "docker"


def test_validate_refuses_images_it_cannot_serve(tmp_path: Path) -> None:
    driver = ContainerReplicaDriver(DockerBuildOptions(docker_url=f"unix://{tmp_path}/no-docker.sock"))
    with pytest.raises(ValidationError, match=r"Image 'echo-svc:1' was built by the 'local' builder.*'docker'"):
        driver.validate(image_record("local", str(tmp_path)))
    with pytest.raises(ValidationError, match=r"Image 'echo-svc:1' has no Docker image reference.*build it again"):
        driver.validate(image_record("docker", None))
    # No engine at that address: said so, with the address and what to do.
    with pytest.raises(ValidationError, match=r"cannot serve image 'echo-svc:1'.*not reachable at unix://.*start"):
        driver.validate(image_record("docker", "aml/echo-svc:1"))
    built = image_record("docker", "aml/echo-svc:1", properties={"docker.image_id": "sha256:ab"})
    payload = driver.image_payload(built)
    assert payload == {"id": "echo-svc:1", "reference": "aml/echo-svc:1", "image_id": "sha256:ab"}


def test_start_needs_the_scoring_config(tmp_path: Path) -> None:
    driver = ContainerReplicaDriver(DockerBuildOptions(docker_url=f"unix://{tmp_path}/no-docker.sock"))
    (tmp_path / "config").mkdir()
    spec = make_spec(driver, image_record("docker", "aml/echo-svc:1"), tmp_path, deployment="d")
    with pytest.raises(DeploymentError, match=r"no scoring\.json in"):
        driver.start(spec)
    write_config(tmp_path / "config", ScoringConfig(auth_enabled=False))
    with pytest.raises(DeploymentError, match=r"cannot create its container: Docker engine not reachable"):
        driver.start(spec)


# ------------------------------------------------------------------------- real Docker engine



@pytest.fixture(scope="module")
def docker_api() -> Iterator[Any]:
    """The engine and the base image: FAIL under CI / AML_TEST_DOCKER=1, skip elsewhere."""
    api = engine_or_fail()
    yield api
    api.close()


@pytest.fixture(scope="module")
def docker_options() -> DockerBuildOptions:
    """Test images get a repository of their own; pip in them reaches PyPI as pip here does."""
    overrides: dict[str, Any] = {}
    if HOST_CA.is_file() and not (os.environ.get("AML_DOCKER_CA_BUNDLE") or os.environ.get("PIP_CERT")):
        overrides["extra_ca_bundle"] = HOST_CA
    return DockerBuildOptions.from_env(tag=f"aml-test-{uuid.uuid4().hex[:8]}/{{name}}:{{version}}", **overrides)


@pytest.fixture(scope="module")
def echo_image(
    docker_api: Any, docker_options: DockerBuildOptions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageRecord]:
    """An image of an entry script that sums rows and prints a line at init(), as the image
    registry records it after a docker build."""
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "app").mkdir()
    (bundle / "app" / "score.py").write_text(SCORE_PY)
    (bundle / "requirements.txt").write_text("")
    (bundle / "image.json").write_text(json.dumps({
        "name": "echo-svc", "version": 1, "entry_script": "score.py", "builtin_scorer": None, "models": [],
        "requirements": [], "python": "3.11",
    }))
    record = image_record("docker", None, digest="test-digest")
    started = time.monotonic()
    result = DockerImageBuilder(None, docker_options).build(bundle, record, lambda f, m: None, lambda line: None)
    print(f"\nbuilt {result.location} in {time.monotonic() - started:.1f} s")
    yield dataclasses.replace(record, location=result.location, properties=result.properties)
    remove_image(result.location, force=True)


@pytest.fixture
def driver(docker_api: Any, docker_options: DockerBuildOptions) -> Iterator[ContainerReplicaDriver]:
    driver = ContainerReplicaDriver(docker_options)
    yield driver
    driver.close()


@pytest.fixture
def deployment(docker_api: Any) -> Iterator[str]:
    """A deployment name of its own; its containers are removed whatever the test did."""
    name = f"dep-{uuid.uuid4().hex[:8]}"
    yield name
    for container_id in container_ids(docker_api, name):
        docker_api.remove_container(container_id, force=True)


def test_validate_against_the_engine(driver: ContainerReplicaDriver, echo_image: ImageRecord) -> None:
    driver.validate(echo_image)
    missing = image_record("docker", "aml-test-missing/nope:1")
    with pytest.raises(
        ValidationError,
        match=r"Docker image 'aml-test-missing/nope:1' of image 'echo-svc:1' is not in the Docker engine at .*"
        r"build the image again",
    ):
        driver.validate(missing)
    # The recorded image id decides: the tag may have been taken by a later build of another workspace.
    gone = dataclasses.replace(echo_image, properties={"docker.image_id": "sha256:" + "0" * 64})
    with pytest.raises(ValidationError, match=r"sha256:0000.*is not in the Docker engine"):
        driver.validate(gone)


def test_replica_serves_rotates_keys_logs_and_stops(
    docker_api: Any, driver: ContainerReplicaDriver, echo_image: ImageRecord, deployment: str, tmp_path: Path
) -> None:
    key, new_key = generate_key(), generate_key()
    config_dir = tmp_path / "config"
    config_dir.mkdir(mode=0o700)  # as mkdtemp makes it: start() lets the container's user in
    write_config(config_dir, ScoringConfig(primary_key_hash=hash_key(key)), mode=0o600)
    spec = make_spec(driver, echo_image, tmp_path, deployment=deployment, generation=2, index=1, cpu_cores=1.0,
                     memory_gb=0.5)
    replica = driver.start(spec)
    try:
        wait_ready(replica)
        assert config_dir.stat().st_mode & 0o055 == 0o055
        assert (config_dir / "scoring.json").stat().st_mode & 0o044 == 0o044
        info = docker_api.inspect_container(replica.container_id)
        assert replica.describe() == {"container": info["Id"], "name": info["Name"].lstrip("/")}
        assert replica.name.startswith(f"aml-{WORKSPACE}-{deployment}-g2-r1-")
        labels = info["Config"]["Labels"]
        assert {k: labels[k] for k in ("aml.workspace", "aml.deployment", "aml.generation", "aml.replica")} == {
            "aml.workspace": WORKSPACE, "aml.deployment": deployment, "aml.generation": "2", "aml.replica": "1"
        }
        host = info["HostConfig"]
        assert host["NetworkMode"] == "host"
        assert host["RestartPolicy"]["Name"] in ("", "no")
        assert host["NanoCpus"] == 1_000_000_000 and host["Memory"] == 512 << 20
        [mount] = [m for m in info["Mounts"] if m["Destination"] == "/var/aml/config"]
        assert (mount["Source"], mount["RW"]) == (str(config_dir.resolve()), False)
        assert info["Config"]["Cmd"][-4:] == ["--config", "/var/aml/config/scoring.json", "--log-level", "info"]
        assert info["Config"]["Image"] == echo_image.properties["docker.image_id"]

        assert score(replica, key, [[1, 2], [3, 4.5]]) == (200, {"sums": [3, 7.5]})
        assert score(replica, None, [[1]])[0] == 401
        assert score(replica, new_key, [[1]])[0] == 401

        # Key rotation: the file is replaced, the folder mount shows the new one, no restart.
        write_config(config_dir, ScoringConfig(primary_key_hash=hash_key(new_key)))
        assert wait_until(lambda: score(replica, key, [[1]])[0] == 401, timeout=10, interval=0.2), "old key kept"
        assert score(replica, new_key, [[2, 2]]) == (200, {"sums": [4]})
        assert replica.alive()

        # The container's output reaches the replica's log file.
        assert wait_until(lambda: INIT_MARKER in spec.log_path.read_text(errors="replace"), timeout=10)
    finally:
        replica.stop(timeout=10)
    from docker.errors import NotFound

    with pytest.raises(NotFound):
        docker_api.inspect_container(replica.container_id)
    assert not replica.alive()
    replica.stop()  # again: nothing to do, no error
    # uvicorn shuts down gracefully on SIGTERM, then dies of it (docker-init reports 128 + 15).
    assert replica.exit_description() == "it was killed by signal 15 (SIGTERM, exit code 143)"


def test_exit_is_described_and_logged(
    docker_api: Any, driver: ContainerReplicaDriver, echo_image: ImageRecord, deployment: str, tmp_path: Path
) -> None:
    (tmp_path / "config").mkdir()
    write_config(tmp_path / "config", "{not json")  # the server refuses it before it starts
    replica = driver.start(make_spec(driver, echo_image, tmp_path, deployment=deployment))
    try:
        assert wait_until(lambda: not replica.alive(), timeout=60, interval=0.2), "the replica kept running"
        assert replica.exit_description() == "it exited with code 2"
        assert wait_until(lambda: "error: Scoring config" in replica.spec.log_path.read_text(), timeout=10)
    finally:
        replica.stop(timeout=1)
    assert container_ids(docker_api, deployment) == set()
    assert replica.exit_description() == "it exited with code 2"  # remembered after the removal
    # Removed behind the driver's back: stop still succeeds.
    other = driver.start(make_spec(driver, echo_image, tmp_path, deployment=deployment, index=1))
    docker_api.remove_container(other.container_id, force=True)
    assert not other.alive()
    other.stop()


def test_cleanup_removes_what_a_killed_supervisor_left(
    docker_api: Any, driver: ContainerReplicaDriver, echo_image: ImageRecord, deployment: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "home"))
    (tmp_path / "config").mkdir()
    write_config(tmp_path / "config", ScoringConfig(auth_enabled=False))
    left = [driver.start(make_spec(driver, echo_image, tmp_path, deployment=deployment, generation=g)) for g in (1, 2)]
    neighbour = f"{deployment}-other"
    other = driver.start(make_spec(driver, echo_image, tmp_path, deployment=neighbour))
    # The same workspace and deployment names in another installation (AML home) on the same engine.
    monkeypatch.setenv("AML_HOME", str(tmp_path / "elsewhere"))
    foreign = driver.start(make_spec(driver, echo_image, tmp_path, deployment=deployment, generation=3))
    monkeypatch.setenv("AML_HOME", str(tmp_path / "home"))
    try:
        assert container_ids(docker_api, deployment) == {r.container_id for r in [*left, foreign]}
        runtime = {"replicas": [r.describe() for r in left]}
        ContainerReplicaDriver(driver.options).cleanup(WORKSPACE, deployment, runtime)  # a new supervisor's driver
        assert container_ids(docker_api, deployment) == {foreign.container_id}
        assert container_ids(docker_api, neighbour) == {other.container_id}
        for replica in left:
            assert not replica.alive()
            replica.stop()
        ContainerReplicaDriver(driver.options).cleanup(WORKSPACE, deployment, {})  # nothing left: no error
    finally:
        other.stop(timeout=1)
        foreign.stop(timeout=1)
