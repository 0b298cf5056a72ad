"""The IoT Edge module on the local Docker engine, started from its manifest as the edge agent would.

A scoring image is built with the docker image builder (the docker target tests' fixtures), its
manifest is made, and the container is created from the module's settings only: the
``createOptions`` JSON string is the Docker Engine API create body (the edge agent passes it on),
with the module's image and its twin env added. The test scores it over the published port with
the module's key, collects its telemetry into the workspace, and exports it offline. Gated as the
other engine tests: FAIL under CI / AML_TEST_DOCKER=1 without an engine, skipped elsewhere. This
engine runs without a bridge network (scripts/docker-service.sh), so the module uses the
documented ``"NetworkMode": "host"`` createOptions and listens on its port itself; the published
port form (``PortBindings``) is checked in test_manifest only.
"""

from __future__ import annotations

import json
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from airflow_aml.deployments.edge import EdgeModuleSpec, build_manifest, collect_edge_telemetry, container_config
from airflow_aml.deployments.edge.export import IMAGE_TAR, INSTRUCTIONS_FILE, MANIFEST_FILE, export_module
from airflow_aml.deployments.edge.manifest import TELEMETRY_FILE
from airflow_aml.deployments.replicas import free_port
from airflow_aml.entities import ImageRecord
from airflow_aml.runtime.scoring import generate_key
from airflow_aml.workspace import Workspace
from tests.unit.deployments.test_docker_target import docker_api, docker_options, echo_image  # noqa: F401 (fixtures)

NAME = "echo-edge"


def _post(url: str, key: str | None, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(api: Any, container_id: str, url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = api.inspect_container(container_id)["State"]
        assert state["Running"], f"module exited ({state}):\n{api.logs(container_id).decode(errors='replace')}"
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, api.logs(container_id).decode(errors="replace")
        time.sleep(0.3)


def test_the_module_started_from_its_manifest_scores_and_its_telemetry_reaches_the_workspace(
    docker_api: Any, echo_image: ImageRecord, workspace: Workspace, tmp_path: Path,  # noqa: F811
) -> None:
    started = time.monotonic()
    folder = tmp_path / "device-telemetry"
    folder.mkdir()
    folder.chmod(0o777)  # the image's user is not the test's; the INSTRUCTIONS say the same
    key, port = generate_key(), free_port()
    spec = EdgeModuleSpec(name=NAME, image=str(echo_image.location), key=key, host_port=port, host_ip="127.0.0.1",
                          host_folder=str(folder), sample_rate=1.0, network_mode="host")
    manifest = build_manifest(spec)
    module = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][NAME]
    assert json.loads(module["settings"]["createOptions"])["HostConfig"]["NetworkMode"] == "host"

    # Exactly what the edge agent hands the engine: createOptions + image + env, nothing of ours.
    container = docker_api.create_container_from_config(
        container_config(module), name=f"aml-test-edge-{uuid.uuid4().hex[:8]}")
    container_id = container["Id"]
    try:
        docker_api.start(container_id)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(docker_api, container_id, url)
        assert _post(f"{url}/score", key, {"data": [[1, 2], [3, 4.5]]}) == (200, {"sums": [3, 7.5]})
        assert _post(f"{url}/score", "wrong-key", {"data": [[1]]})[0] == 401
        assert _post(f"{url}/score", None, {"data": [[1]]})[0] == 401

        deadline = time.monotonic() + 30  # the module's sink writes once a second
        telemetry = folder / TELEMETRY_FILE
        while not telemetry.exists() or len(telemetry.read_text().splitlines()) < 3:
            assert time.monotonic() < deadline, telemetry.read_text() if telemetry.exists() else "no telemetry"
            time.sleep(0.3)
    finally:
        docker_api.remove_container(container_id, force=True)

    collected = collect_edge_telemetry(workspace, NAME, folder)
    assert collected["status_counts"] == {"200": 1, "401": 2} and collected["requests"] == 3
    lines = workspace.get_default_datastore().read_bytes(collected["path"]).decode().splitlines()
    assert collected["path"].startswith(f"deployments/{NAME}/collected/")
    scored = [json.loads(line) for line in lines if json.loads(line)["status"] == 200]
    assert json.loads(scored[0]["input"]) == {"data": [[1, 2], [3, 4.5]]}
    again = collect_edge_telemetry(workspace, NAME, folder)  # nothing new: nothing written twice
    assert again["new_lines"] == 0 and again["requests"] == 3
    print(f"\nedge module built, started from its manifest, scored and collected in {time.monotonic() - started:.1f} s")


def test_offline_export_is_the_image_tarball_and_the_manifest_and_is_idempotent(
    docker_api: Any, echo_image: ImageRecord, tmp_path: Path,  # noqa: F811
) -> None:
    reference = str(echo_image.location)
    manifest = build_manifest(EdgeModuleSpec(name=NAME, image=reference, key=generate_key()))
    out = tmp_path / "export"
    record = export_module(out, name=NAME, reference=reference, manifest=manifest, host_folder="/var/lib/x",
                           host_port=5001, api=docker_api)
    assert record["image_id"] == docker_api.inspect_image(reference)["Id"]
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert reference in (out / INSTRUCTIONS_FILE).read_text()
    tar = out / IMAGE_TAR
    with tarfile.open(tar) as archive:  # a `docker save` archive names the image's tag
        index = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert reference in index[0]["RepoTags"]
    mtime = tar.stat().st_mtime_ns
    assert export_module(out, name=NAME, reference=reference, manifest=manifest, host_folder="/var/lib/x",
                         host_port=5001, api=docker_api) == record
    assert tar.stat().st_mtime_ns == mtime  # the same image and manifest: not saved again
