"""Run configuration: how a script is run on a compute target.

Built in memory or saved as ``.aml/<name>.runconfig.yml`` inside the source directory and loaded
back, as in the Azure ML SDK. Unknown fields are errors (a typo such as ``scirpt:`` must fail at
once, naming the field), and every error names the file it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import AmlError, RunConfigurationError
from airflow_aml.names import validate_secret_name

RUNCONFIG_DIR = ".aml"
RUNCONFIG_SUFFIX = ".runconfig.yml"

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MARKER_CHARS = re.compile(r"^[A-Za-z0-9_.'\" <>=!~(),*+-]*$")  # what a PEP 508 marker needs


def validate_requirement(line: str) -> str:
    """A pip requirement line as data, the one check for run environments, conda files' pip
    sections and image specs: a PEP 508 requirement (name, extras, version specifiers, an
    environment marker) as ``packaging`` parses it, and nothing else: no options (``-r``,
    ``--index-url``, per-line ``--global-option``), no URLs, no shell (``numpy; $(touch x)`` is
    not a marker). The line is handed to uv or pip in a requirements file, never to a shell; the
    text is returned as given (stripped) so that environment hashes stay what they were.
    ValueError otherwise."""
    from packaging.requirements import InvalidRequirement, Requirement

    text = line.strip() if isinstance(line, str) else ""
    refused = f"{line!r} is not a package requirement (e.g. 'scikit-learn>=1.4'; no options, URLs or shell)"
    if not text or "\n" in line or "\r" in line or text.startswith("-"):
        raise ValueError(refused)
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        raise ValueError(refused) from None
    if requirement.url:
        raise ValueError(f"{line!r}: URL requirements are not allowed; name a package on the index")
    # A marker's string literals may hold anything PEP 508 allows; none of what a shell reads
    # ("$(id)", backticks) is ever needed in one, and a line may end up on a Docker RUN line.
    if not _MARKER_CHARS.match(text.partition(";")[2]):
        raise ValueError(refused)
    return text


def check_source_directory(path: str | Path) -> Path:
    """``path`` as a Path when it is a folder; RunConfigurationError otherwise (the same error
    wherever a run's source directory is given: the SDK, the operator, a compute target)."""
    source = Path(path)
    if not source.is_dir():
        raise RunConfigurationError(f"source_directory {str(source)!r} does not exist or is not a directory")
    return source


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvironmentSpec(_Strict):
    """The Python environment of a run.

    ``current``: the interpreter that submits (nothing to build). ``virtualenv``: a virtualenv
    built with uv from ``pip`` requirements and/or a conda-style file's pip section, cached by the
    spec's content hash so that an unchanged spec is built once.
    """

    kind: Literal["current", "virtualenv"] = "current"
    pip: tuple[str, ...] = ()
    conda_file: str | None = None  # path inside the source directory
    python: str | None = None  # interpreter for the virtualenv; default: the current one

    @field_validator("pip")
    @classmethod
    def _check_pip(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_requirement(item) for item in value)

    @model_validator(mode="after")
    def _check_kind(self) -> EnvironmentSpec:
        if self.kind == "current" and (self.pip or self.conda_file):
            raise ValueError("pip/conda_file need kind: virtualenv")
        return self


class SweepSpec(_Strict):
    """A grid of hyper-parameters run as child runs; each value is passed as ``--<name> <value>``."""

    grid: dict[str, tuple[str | int | float | bool, ...]]
    max_concurrent: int = Field(default=2, ge=1, le=64)

    @field_validator("grid")
    @classmethod
    def _check_grid(cls, value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        if not value:
            raise ValueError("grid must name at least one parameter")
        for name, values in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", name):
                raise ValueError(f"grid parameter {name!r} is not a valid option name")
            if not values:
                raise ValueError(f"grid parameter {name!r} has no values")
        return value

    def combinations(self) -> list[dict[str, Any]]:
        combos: list[dict[str, Any]] = [{}]
        for name, values in self.grid.items():
            combos = [{**combo, name: value} for combo in combos for value in values]
        return combos


class RunConfiguration(_Strict):
    script: str
    arguments: tuple[str, ...] = ()
    target: str = "local"
    environment: EnvironmentSpec = EnvironmentSpec()
    environment_variables: dict[str, str] = Field(default_factory=dict)
    max_run_duration_seconds: float | None = Field(default=None, gt=0)
    sweep: SweepSpec | None = None
    # Workspace secrets the run may read (``run.workspace.vault.get(name)``) on a served workspace: its run token
    # is minted naming them, and the service refuses every other secret to it.
    secrets: tuple[str, ...] = ()

    @field_validator("script")
    @classmethod
    def _check_script(cls, value: str) -> str:
        path = Path(value)
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"script {value!r} must be a relative path inside the source directory")
        return value

    @field_validator("arguments", mode="before")
    @classmethod
    def _stringify_arguments(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(item) for item in value)
        return value

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            try:
                validate_secret_name(name)
            except AmlError as exc:
                raise ValueError(str(exc)) from None
        return tuple(dict.fromkeys(value))  # each once, in the order given

    @field_validator("environment_variables")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_VAR.match(key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "run configuration") -> RunConfiguration:
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            raise RunConfigurationError(f"Invalid {source}: {_describe(exc)}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfiguration:
        path = Path(path)
        if not path.is_file():
            raise RunConfigurationError(f"Run configuration file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RunConfigurationError(f"Run configuration file {str(path)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise RunConfigurationError(f"Run configuration file {str(path)!r} must hold a mapping")
        return cls.from_dict(data, source=f"run configuration file {str(path)!r}")

    @classmethod
    def load(cls, source_directory: str | Path, name: str) -> RunConfiguration:
        """Load ``<source_directory>/.aml/<name>.runconfig.yml``."""
        return cls.from_yaml(Path(source_directory) / RUNCONFIG_DIR / f"{name}{RUNCONFIG_SUFFIX}")

    @classmethod
    def coerce(cls, value: RunConfiguration | dict[str, Any] | str | Path) -> RunConfiguration:
        """Accept what an operator may be given: an object, a dict, or a YAML file path."""
        if isinstance(value, RunConfiguration):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        if isinstance(value, str | Path):
            return cls.from_yaml(value)
        raise RunConfigurationError(
            f"run_config must be a RunConfiguration, a dict or a YAML path, not {type(value).__name__}"
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    def save(self, source_directory: str | Path, name: str) -> Path:
        path = Path(source_directory) / RUNCONFIG_DIR / f"{name}{RUNCONFIG_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def _describe(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif error["type"] == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
