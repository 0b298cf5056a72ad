"""What an image is built from: model versions, scoring code or a built-in scorer, dependencies.

    spec = ImageSpec(models=["iris:3"], source_directory="score/", entry_script="score.py",
                     pip=["scikit-learn==1.5.2"])
    spec = ImageSpec(models=["iris"], builtin_scorer="sklearn")   # no code: "iris" = latest version

Everything here is data, checked when the spec is made: requirement lines are package specs only
(no options such as ``--index-url``, no URLs, no newlines, no shell), paths stay relative where
they must, the base image is a plain Docker reference. Whether the files exist and the models are
registered is checked by ``Image.create`` (``plan.plan_image``) before anything is created.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import ValidationError
from airflow_aml.references import Reference
from airflow_aml.runconfig import validate_requirement

BuiltinScorer = Literal["sklearn", "onnx"]

# A Docker image reference: [host[:port]/]path[:tag][@sha256:digest]. Nothing else (no spaces, no
# shell characters): the Docker builder passes it to a FROM line.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOCKER_REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)


def _relative(value: str, what: str) -> str:
    path = PurePosixPath(value)
    if not value or value.strip() != value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"{what} {value!r} must be a relative path without '..'")
    return value


class ImageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1)
    entry_script: str | None = None  # relative to source_directory; defines init() and run()
    source_directory: str | None = None  # scoring script and other files, copied to app/
    builtin_scorer: BuiltinScorer | None = None  # no-code scoring of a sklearn or ONNX model
    # With builtin_scorer "onnx": the registered scikit-learn model is converted to model.onnx at build.
    convert_to_onnx: bool = False
    pip: list[str] = Field(default_factory=list)
    conda_file: str | None = None  # relative to source_directory when there is one
    extra_files: list[str] = Field(default_factory=list)  # files/folders copied to app/<their name>
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    base_image: str | None = None  # Docker builder only
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: list[str]) -> list[str]:
        names = [Reference.parse(item, "model").name for item in value]
        if len(set(names)) != len(names):
            raise ValueError(f"models {value!r} name a model more than once (an image packs one version of each)")
        return value

    @field_validator("pip")
    @classmethod
    def _check_pip(cls, value: list[str]) -> list[str]:
        return [validate_requirement(item) for item in value]

    @field_validator("entry_script")
    @classmethod
    def _check_entry_script(cls, value: str | None) -> str | None:
        return None if value is None else _relative(value, "entry_script")

    @field_validator("conda_file", "source_directory")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value or "\0" in value):
            raise ValueError(f"path {value!r} is not valid")
        return value

    @field_validator("extra_files")
    @classmethod
    def _check_extra_files(cls, value: list[str]) -> list[str]:
        for item in value:
            cls._check_path(item)
        return value

    @field_validator("base_image")
    @classmethod
    def _check_base_image(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 255 or not _DOCKER_REFERENCE.match(value)):
            raise ValueError(f"base_image {value!r} is not a Docker image reference (e.g. 'python:3.11-slim')")
        return value

    @model_validator(mode="after")
    def _check_scoring(self) -> ImageSpec:
        if (self.entry_script is None) == (self.builtin_scorer is None):
            raise ValueError("give exactly one of entry_script (your scoring code) or builtin_scorer")
        if self.entry_script is not None and self.source_directory is None:
            raise ValueError("entry_script needs the source_directory that contains it")
        if self.builtin_scorer is not None and len(self.models) != 1:
            raise ValueError(
                f"the built-in {self.builtin_scorer!r} scorer serves exactly one model, not {len(self.models)}"
            )
        if self.convert_to_onnx and self.builtin_scorer != "onnx":
            raise ValueError("convert_to_onnx goes with builtin_scorer 'onnx' (it serves the converted model)")
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def coerce(cls, value: ImageSpec | dict[str, Any] | str | Path, *, image: str) -> ImageSpec:
        """An ImageSpec from an object, a dict or a YAML file; ValidationError naming ``image``.

        Relative paths in a YAML file are taken relative to the file's folder."""
        if isinstance(value, ImageSpec):
            return value
        where = f"spec of image {image!r}"
        if isinstance(value, str | Path):
            path = Path(value)
            if not path.is_file():
                raise ValidationError(f"Image spec file {str(path)!r} of image {image!r} does not exist")
            try:
                value = yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise ValidationError(f"Image spec file {str(path)!r} is not valid YAML: {exc}") from exc
            where = f"image spec file {str(path)!r} of image {image!r}"
            if isinstance(value, dict):
                value = _anchor_paths(value, path.parent)
        if not isinstance(value, dict):
            raise ValidationError(f"The {where} must be an ImageSpec, a mapping or a YAML file path")
        try:
            return cls.model_validate(value)
        except PydanticValidationError as exc:
            raise ValidationError(f"Invalid {where}: {describe(exc)}") from exc

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative paths of a spec file are relative to the file's folder, not to the current one.
    (A conda file is relative to the source directory when there is one, as for runs.)"""

    def anchored(value: Any) -> Any:
        return str(folder / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    data = dict(data)
    if "source_directory" in data:
        data["source_directory"] = anchored(data["source_directory"])
    elif "conda_file" in data:
        data["conda_file"] = anchored(data["conda_file"])
    if isinstance(data.get("extra_files"), list):
        data["extra_files"] = [anchored(item) for item in data["extra_files"]]
    return data


def describe(exc: PydanticValidationError) -> str:
    """A pydantic error as one line: which field, what is wrong."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(spec)"
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif error["type"] == "missing":
            parts.append(f"missing field {where!r}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            parts.append(message if where == "(spec)" else f"{where}: {message}")
    return "; ".join(parts)
