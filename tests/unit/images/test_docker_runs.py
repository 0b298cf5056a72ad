"""The docker compute target's pieces that need no engine: its config checks, the image's
requirements and Dockerfile, the content hash its cache is keyed by, imports without docker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_aml.compute import build_compute_target, compute_kinds
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.docker import DockerBuildOptions
from airflow_aml.images.docker.runs import DockerComputeConfig, DockerComputeTarget, parse_memory
from airflow_aml.images.docker.runs.image import _digest, _environment_dockerfile, image_requirements
from airflow_aml.runconfig import EnvironmentSpec
from airflow_aml.workspace import Workspace


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 512 * 1024**2), ("2g", 2 * 1024**3), ("1.5GiB", int(1.5 * 1024**3)), ("64MB", 64 * 1024**2),
    (100_000_000, 100_000_000), ("8388608", 8 * 1024**2),
])
def test_memory_sizes(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1g", "1t", "5m", 1024, True, "2 g b"])
def test_bad_memory_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("config", "needle"), [
    ({"gpus": 1}, "gpus: unknown key"),
    ({"memory": "lots"}, "memory: memory 'lots' is not a size"),
    ({"memory": "1m"}, "below Docker's minimum"),
    ({"cpus": 0}, "cpus: Input should be greater than 0"),
    ({"cpus": "two"}, "cpus: Input should be a valid number"),
    ({"network_mode": "my net"}, "must be one word"),
])
def test_registering_a_bad_config_is_refused(workspace: Workspace, config: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match="Invalid config for docker compute target") as info:
        workspace.register_compute_target("docker-local", kind="docker", config=config)
    assert needle in str(info.value)
    assert "known keys: base_image, cpus, memory" in str(info.value)
    assert "docker-local" not in workspace.compute_targets


def test_a_good_config_registers_and_builds_the_docker_target(workspace: Workspace) -> None:
    assert "docker" in compute_kinds()
    workspace.register_compute_target("docker-local", kind="docker",
                                      config={"cpus": 1.5, "memory": "2g", "stop_timeout": 5})
    target = build_compute_target(workspace, "docker-local")
    assert isinstance(target, DockerComputeTarget)
    assert target.settings.nano_cpus == 1_500_000_000
    assert target.settings.memory_bytes == 2 * 1024**3
    assert target.settings.network_mode == "host"


def test_the_local_target_still_accepts_any_config(workspace: Workspace) -> None:
    workspace.register_compute_target("box", kind="local", config={"anything": 1})
    assert workspace.compute_targets["box"].config == {"anything": 1}


def test_image_requirements_add_the_runtime_but_no_database_driver(tmp_path: Path) -> None:
    spec = EnvironmentSpec(kind="virtualenv", pip=("six==1.16.0",))
    lines, python = image_requirements(spec, tmp_path)
    names = [line.split("==")[0].lower() for line in lines]
    assert lines[0] == "six==1.16.0"
    assert {"httpx", "pydantic", "sqlalchemy"} <= set(names)
    assert not {"psycopg", "psycopg-binary", "apache-airflow"} & set(names)
    assert python is None
    # The "current" environment: the runtime only.
    current, _ = image_requirements(EnvironmentSpec(), tmp_path)
    assert "six==1.16.0" not in current and any(line.startswith("httpx") for line in current)


def test_environment_dockerfile_layers_from_base_to_package() -> None:
    options = DockerBuildOptions(base_image="local/python-base:bookworm", pip_index_url="https://idx.example/simple")
    text = _environment_dockerfile(options, "3.11", has_ca=True)
    order = [text.index(part) for part in (
        "FROM local/python-base:bookworm", "COPY certs/extra-ca.pem", "ARG PIP_INDEX_URL", "venv.create",
        "RUN pip install -r /opt/aml/requirements.txt", "COPY src/ /opt/aml/src/", "airflow_aml runtime imports OK",
    )]
    assert order == sorted(order)
    assert "idx.example" not in text  # index URLs come as build arguments (they may hold credentials)
    assert "want = '3.11'" in text
    assert "want =" not in _environment_dockerfile(options, ">=3.10", has_ca=False)


def test_the_cache_key_follows_content_and_build_arguments(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "a.txt").write_text("same")
    options = DockerBuildOptions()
    assert _digest(one, options, extra="base") == _digest(two, options, extra="base")  # paths, not places
    assert _digest(one, options, extra="base") != _digest(one, options, extra="other-base")
    assert _digest(one, options, extra="base") != _digest(one, DockerBuildOptions(pip_index_url="https://x/simple"),
                                                          extra="base")
    (two / "sub" / "a.txt").write_text("changed")
    assert _digest(one, options, extra="base") != _digest(two, options, extra="base")
    (two / "sub" / "a.txt").write_text("same")
    (two / "sub" / "a.txt").chmod(0o755)
    assert _digest(one, options, extra="base") != _digest(two, options, extra="base")


def test_config_defaults_serialize_for_the_supervisor() -> None:
    config = DockerComputeConfig.parse({"memory": "1g"})
    assert DockerComputeConfig.parse(config.model_dump(mode="json")) == config


def test_the_package_imports_without_the_docker_sdk() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'docker' or name.startswith('docker.'):\n"
        "            raise ImportError('docker blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import airflow_aml.compute, airflow_aml.images.docker.runs\n"
        "from airflow_aml.compute import compute_kind\n"
        "assert compute_kind('docker').__name__ == 'DockerComputeTarget'\n"
        "assert 'docker' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
