from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.compute import LocalComputeTarget
from airflow_aml.exceptions import RunConfigurationError, ValidationError
from airflow_aml.runconfig import EnvironmentSpec, RunConfiguration
from tests.unit.compute.fakes import FakeStore, FakeWorkspace


@pytest.fixture
def target() -> LocalComputeTarget:
    return LocalComputeTarget(FakeWorkspace(FakeStore()), None)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    return tmp_path / "src"


def venv_config(**env: object) -> RunConfiguration:
    return RunConfiguration(script="train.py", environment=EnvironmentSpec(kind="virtualenv", **env))


def test_valid_configuration_passes(target: LocalComputeTarget, src: Path) -> None:
    target.validate(RunConfiguration(script="train.py"), src)


def test_missing_script_is_named(target: LocalComputeTarget, src: Path) -> None:
    with pytest.raises(RunConfigurationError, match=r"Script 'trian.py' not found in source directory"):
        target.validate(RunConfiguration(script="trian.py"), src)


def test_script_that_is_a_folder_is_refused(target: LocalComputeTarget, src: Path) -> None:
    (src / "pkg").mkdir()
    with pytest.raises(RunConfigurationError, match="'pkg' not found"):
        target.validate(RunConfiguration(script="pkg"), src)


def test_script_symlink_leaving_the_source_is_refused(target: LocalComputeTarget, src: Path,
                                                      tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("")
    (src / "link.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(RunConfigurationError, match="outside source directory"):
        target.validate(RunConfiguration(script="link.py"), src)


def test_missing_source_directory(target: LocalComputeTarget, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        target.validate(RunConfiguration(script="train.py"), tmp_path / "nope")


def test_missing_conda_file_is_named(target: LocalComputeTarget, src: Path) -> None:
    with pytest.raises(RunConfigurationError, match=r"Conda file 'env.yml'.*not found"):
        target.validate(venv_config(conda_file="env.yml"), src)


def test_bad_line_in_conda_file_is_named(target: LocalComputeTarget, src: Path) -> None:
    (src / "env.yml").write_text("dependencies:\n  - python=3.11\n  - pip:\n    - '--index-url http://evil'\n")
    with pytest.raises(RunConfigurationError, match=r"env.yml.*--index-url"):
        target.validate(venv_config(conda_file="env.yml"), src)


def test_conda_file_that_is_not_yaml(target: LocalComputeTarget, src: Path) -> None:
    (src / "env.yml").write_text("dependencies: [unclosed\n")
    with pytest.raises(RunConfigurationError, match="not valid YAML"):
        target.validate(venv_config(conda_file="env.yml"), src)


def test_missing_interpreter_path(target: LocalComputeTarget, src: Path) -> None:
    with pytest.raises(RunConfigurationError, match="/no/such/python"):
        target.validate(venv_config(python="/no/such/python"), src)


def test_virtualenv_needs_uv(target: LocalComputeTarget, src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_aml.compute import environments

    def no_uv() -> str:
        raise environments.EnvironmentBuildError("uv is needed but was not found on PATH")

    monkeypatch.setattr(environments, "find_uv", no_uv)
    with pytest.raises(RunConfigurationError, match="cannot build the run's virtualenv: uv is needed"):
        target.validate(venv_config(pip=("six",)), src)
