from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import EnvironmentSpec, RunConfiguration, SweepSpec, validate_requirement


def test_round_trip_through_yaml_in_source_directory(tmp_path: Path) -> None:
    config = RunConfiguration(
        script="train.py", arguments=["--epochs", 3], environment_variables={"SEED": "1"},
        environment=EnvironmentSpec(kind="virtualenv", pip=("scikit-learn>=1.4",)),
        sweep=SweepSpec(grid={"C": (0.1, 1.0)}), max_run_duration_seconds=60,
    )
    path = config.save(tmp_path, "train")
    assert path == tmp_path / ".aml" / "train.runconfig.yml"
    loaded = RunConfiguration.load(tmp_path, "train")
    assert loaded == config
    assert loaded.arguments == ("--epochs", "3")


def test_typo_in_yaml_names_the_field_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("scirpt: train.py\n")
    with pytest.raises(RunConfigurationError, match=r"unknown field 'scirpt'.*|missing field 'script'") as info:
        RunConfiguration.from_yaml(path)
    assert str(path) in str(info.value)
    assert "scirpt" in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"script": "/etc/passwd"}, "relative path"),
        ({"script": "../train.py"}, "relative path"),
        ({"script": "t.py", "max_run_duration_seconds": -1}, "max_run_duration_seconds"),
        ({"script": "t.py", "environment_variables": {"1BAD": "x"}}, "1BAD"),
        ({"script": "t.py", "environment": {"kind": "current", "pip": ["six"]}}, "virtualenv"),
        ({"script": "t.py", "sweep": {"grid": {}}}, "at least one"),
        ({"script": "t.py", "sweep": {"grid": {"C": []}}}, "no values"),
    ],
)
def test_invalid_configurations_are_refused(data: dict, message: str) -> None:
    with pytest.raises(RunConfigurationError, match=message):
        RunConfiguration.from_dict(data)


def test_missing_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(RunConfigurationError, match="does not exist"):
        RunConfiguration.from_yaml(tmp_path / "nope.yml")
    (tmp_path / "list.yml").write_text("- a\n")
    with pytest.raises(RunConfigurationError, match="mapping"):
        RunConfiguration.from_yaml(tmp_path / "list.yml")
    (tmp_path / "broken.yml").write_text("script: [\n")
    with pytest.raises(RunConfigurationError, match="not valid YAML"):
        RunConfiguration.from_yaml(tmp_path / "broken.yml")


def test_coerce_accepts_object_dict_and_path(tmp_path: Path) -> None:
    config = RunConfiguration(script="a.py")
    path = config.save(tmp_path, "a")
    assert RunConfiguration.coerce(config) is config
    assert RunConfiguration.coerce({"script": "a.py"}) == config
    assert RunConfiguration.coerce(str(path)) == config
    with pytest.raises(RunConfigurationError, match="int"):
        RunConfiguration.coerce(3)  # type: ignore[arg-type]


def test_sweep_combinations_are_the_cartesian_product() -> None:
    sweep = SweepSpec(grid={"C": (0.1, 1), "penalty": ("l1", "l2")})
    assert sweep.combinations() == [
        {"C": 0.1, "penalty": "l1"}, {"C": 0.1, "penalty": "l2"},
        {"C": 1, "penalty": "l1"}, {"C": 1, "penalty": "l2"},
    ]


@pytest.mark.parametrize("line", ["six", "scikit-learn>=1.4,<2", "pandas[excel]==2.2", 'numpy; python_version>"3"'])
def test_valid_requirements(line: str) -> None:
    assert validate_requirement(line) == line


NOT_DATA = [
    "", "-r other.txt", "--index-url http://x", "six\nrm", "x && y", "git+https://x/y",
    # A marker is PEP 508 grammar, not anything after ';': these passed a regex before.
    "numpy; $(touch /tmp/x)", "numpy; `rm -rf /`", "numpy ; python_version<'3' || curl evil",
    "pkg --global-option=--x", "six -i https://evil.example",
]


@pytest.mark.parametrize("line", NOT_DATA)
def test_requirements_that_are_not_data_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a package requirement"):
        validate_requirement(line)


def test_url_requirements_are_refused() -> None:
    with pytest.raises(ValueError, match="URL requirements are not allowed"):
        validate_requirement("pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl")


@pytest.mark.parametrize("line", NOT_DATA[1:])
def test_one_validator_for_run_environments_and_image_specs(line: str) -> None:
    """A run's environment refuses at submit what an image spec refuses (it used to fail later
    inside uv)."""
    from airflow_aml.images.spec import ImageSpec

    with pytest.raises(PydanticValidationError, match="not a package requirement"):
        EnvironmentSpec(kind="virtualenv", pip=(line,))
    with pytest.raises(PydanticValidationError, match="not a package requirement"):
        ImageSpec(models=["m"], builtin_scorer="sklearn", pip=[line])
