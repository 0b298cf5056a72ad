"""End to end on the ``docker`` target: images built by the Docker builder, served by containers
behind the supervisor's front, updated without a failed request, deleted with their containers.

Needs a Docker engine and the base image, like the builder's tests: FAIL under CI=true or
AML_TEST_DOCKER=1 when missing, skipped elsewhere (``source scripts/docker-service.sh``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import DeploymentState
from airflow_aml.images import ImageSpec
from airflow_aml.workspace import Workspace
from tests.unit.deployments.conftest import SCORE_PY, body, score, under_load
from tests.unit.deployments.test_docker_target import HOST_CA, docker_api  # noqa: F401 - the engine fixture


@pytest.fixture(scope="module")
def docker_images(
    docker_api: Any, deploy_ws: Workspace, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("docker-sources")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AML_DOCKER_TAG", f"aml-test-{uuid.uuid4().hex[:8]}/{{name}}:{{version}}")
        if HOST_CA.is_file():
            mp.setenv("AML_DOCKER_CA_BUNDLE", str(HOST_CA))
        built = {}
        for version in ("1", "2"):
            source = tmp / f"src-{version}"
            source.mkdir()
            (source / "score.py").write_text(SCORE_PY)
            (source / "version.txt").write_text(version + "\n")
            built[version] = deploy_ws.create_image(
                "echo-docker", ImageSpec(models=["m"], source_directory=str(source), entry_script="score.py"),
                builder="docker",
            )
        yield built


def _containers(api: Any, deployment: str) -> list[dict[str, Any]]:
    return api.containers(all=True, filters={"label": [f"aml.deployment={deployment}"]})


def test_docker_deployment_scores_updates_and_deletes(
    docker_api: Any, deploy_ws: Workspace, docker_images: dict[str, Any], cleanup: list[str]  # noqa: F811
) -> None:
    cleanup.append("boxed")
    service = Deployment.create(deploy_ws, "boxed", docker_images["1"], target="docker",
                                config={"replicas": 2, "memory_gb": 1, "cpu_cores": 1})
    assert service.state is DeploymentState.HEALTHY and service.target == "docker"
    key = service.get_keys()[0]
    containers = _containers(docker_api, "boxed")
    assert len(containers) == 2 and all(c["State"] == "running" for c in containers)
    assert {r["container"] for r in service.replicas} == {c["Id"] for c in containers}
    inspect = docker_api.inspect_container(containers[0]["Id"])
    assert inspect["HostConfig"]["Memory"] == 1 << 30 and inspect["HostConfig"]["NanoCpus"] == 10**9
    assert body(score(service, key=key))["version"] == "1"
    assert score(service).status_code == 401

    # Key rotation reaches the containers through the bind-mounted config folder.
    new_key = service.regenerate_key("primary")
    assert score(service, key=key).status_code == 401 and score(service, key=new_key).status_code == 200

    # Rolling update to the second image under load: not one request fails.
    outcomes, versions = under_load(service, new_key, lambda: service.update(image=docker_images["2"]),
                                    clients=3, settle=0.5, max_requests=3000)
    assert set(outcomes) == {"200"}, outcomes
    assert versions[0] == "1" and versions[-1] == "2"
    assert service.serving_image_id == docker_images["2"].id
    old_ids = {c["Id"] for c in containers}
    assert not old_ids & {c["Id"] for c in _containers(docker_api, "boxed")}  # old containers removed

    assert "==> replica" in service.get_logs()
    service.delete()
    assert _containers(docker_api, "boxed") == []
    assert not Path(service.folder).exists()

    # With no deployment left on it, deleting image version 1 also removes it from the engine.
    reference = docker_images["1"].location
    docker_images["1"].delete()
    assert docker_api.images(name=reference.split(":")[0]) == [] or all(
        reference not in (image.get("RepoTags") or []) for image in docker_api.images())
