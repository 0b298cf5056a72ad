from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_aml.compute import environments
from airflow_aml.compute.environments import (
    EnvironmentBuildError,
    prepare_python,
    read_conda_file,
    resolve_requirements,
    runtime_requirements,
)
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import EnvironmentSpec

CONDA = """\
name: demo
channels: [conda-forge]
dependencies:
  - python=3.11
  - conda-forge::numpy=1.26
  - scikit-learn>=1.4
  - pandas 2.1 py311_0
  - pip
  - pip:
    - six==1.16.0
    - requests[socks]>=2 ; python_version >= "3.8"
"""


def test_conda_file_maps_packages_to_pip(tmp_path: Path) -> None:
    path = tmp_path / "env.yml"
    path.write_text(CONDA)
    spec = read_conda_file(path)
    assert spec.python == "3.11"
    assert spec.requirements == (
        "numpy==1.26.*", "scikit-learn>=1.4", "pandas==2.1.*", "six==1.16.0",
        'requests[socks]>=2 ; python_version >= "3.8"',
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "must hold a mapping"),
        ("dependencies: numpy\n", "must be a list"),
        ("dependencies:\n  - conda: [x]\n", "Unsupported dependency section"),
        ("dependencies:\n  - pip: [-e .]\n", "Invalid requirement"),
        ("dependencies:\n  - 'numpy && rm -rf /'\n", "Invalid requirement"),
        ("dependencies:\n  - python=three\n", "Python version"),
    ],
)
def test_bad_conda_files_are_refused_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "env.yml"
    path.write_text(text)
    with pytest.raises(RunConfigurationError, match=message) as info:
        read_conda_file(path)
    assert "env.yml" in str(info.value)


def test_resolve_requirements_merges_pip_and_conda(tmp_path: Path) -> None:
    (tmp_path / "env.yml").write_text("dependencies: [python=3.12, {pip: [six]}]\n")
    spec = EnvironmentSpec(kind="virtualenv", pip=("attrs",), conda_file="env.yml")
    assert resolve_requirements(spec, tmp_path) == (["attrs", "six"], "3.12")
    explicit = EnvironmentSpec(kind="virtualenv", conda_file="env.yml", python="3.11")
    assert resolve_requirements(explicit, tmp_path)[1] == "3.11"


def test_runtime_requirements_are_pinned_and_yield_to_the_user() -> None:
    lines = runtime_requirements(["PyYAML>=5", "numpy"])
    names = {line.split("==")[0] for line in lines}
    assert {"sqlalchemy", "pydantic", "cryptography", "pathspec", "rich"} <= names
    assert "pyyaml" not in names  # the user's own line wins
    assert all("==" in line for line in lines if line.split("==")[0] in ("sqlalchemy", "pydantic"))


def test_current_environment_is_this_interpreter(tmp_path: Path) -> None:
    assert prepare_python(EnvironmentSpec(), tmp_path) == sys.executable


def test_failed_build_reports_uv_output(aml_home: Path, tmp_path: Path) -> None:
    spec = EnvironmentSpec(kind="virtualenv", pip=("this-package-does-not-exist-aml-test==0.0.1",))
    lines: list[str] = []
    with pytest.raises(EnvironmentBuildError) as info:
        prepare_python(spec, tmp_path, log_fn=lines.append)
    assert "this-package-does-not-exist-aml-test" in str(info.value)
    assert any(line.startswith("$ ") for line in lines)  # uv's commands and output went to the log
    envs = aml_home / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()]  # the temp build folder was removed


@pytest.mark.slow
def test_virtualenv_is_built_once_and_can_import_the_runtime(aml_home: Path, tmp_path: Path) -> None:
    (tmp_path / "env.yml").write_text("dependencies:\n  - pip:\n    - six\n")
    spec = EnvironmentSpec(kind="virtualenv", conda_file="env.yml")
    lines: list[str] = []
    python = prepare_python(spec, tmp_path, log_fn=lines.append)
    assert python.startswith(str(aml_home / "envs"))
    assert any("Building environment" in line for line in lines)
    probe = subprocess.run(
        [python, "-c", "import six, sys, airflow_aml.runtime.run, sqlalchemy; print(sys.prefix)"],
        capture_output=True, text=True, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(Path(python).parent.parent)
    # The main environment's packages are not visible: the run depends on what it declares.
    hidden = subprocess.run([python, "-c", "import airflow"], capture_output=True, text=True, check=False)
    assert hidden.returncode != 0
    # Bytecode compiled at build time: a process that may not write it (PYTHONDONTWRITEBYTECODE, a
    # read-only folder) does not compile the libraries again on every start (issue 16).
    site_packages = next(Path(python).parent.parent.glob("lib/python*/site-packages"))
    assert list((site_packages / "__pycache__").glob("six.*.pyc"))

    started = time.monotonic()
    again: list[str] = []
    assert prepare_python(spec, tmp_path, log_fn=again.append) == python
    assert time.monotonic() - started < 1.0
    assert any("Using cached environment" in line for line in again)


@pytest.mark.slow
def test_concurrent_builders_build_once(aml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []
    real_build = environments._build

    def counting_build(tmp: Path, *args: object) -> None:
        builds.append(tmp)
        real_build(tmp, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(environments, "_build", counting_build)
    spec = EnvironmentSpec(kind="virtualenv")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(prepare_python(spec, tmp_path, log_fn=lambda _: None)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(set(results)) == 1 and len(results) == 3


def test_a_cancel_stops_the_build(aml_home: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    spec = EnvironmentSpec(kind="virtualenv", pip=("six",))
    with pytest.raises(EnvironmentBuildError, match="run was canceled"):
        prepare_python(spec, tmp_path, log_fn=lambda _: None, stop=stop)
    assert not [p for p in (aml_home / "envs").iterdir() if p.is_dir()]


@pytest.mark.slow
def test_runtime_that_cannot_import_is_a_logged_warning(aml_home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environments, "_RUNTIME_DISTRIBUTIONS", ())  # none of the runtime's deps
    monkeypatch.setattr(environments.importlib.util, "find_spec", lambda name: None)
    lines: list[str] = []
    python = prepare_python(EnvironmentSpec(kind="virtualenv"), tmp_path, log_fn=lines.append)
    assert Path(python).exists()
    assert any(line.startswith("WARNING: airflow_aml.runtime cannot be imported") for line in lines), lines
