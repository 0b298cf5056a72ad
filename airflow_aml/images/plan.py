"""Everything about an image build that is checked and resolved BEFORE anything is created.

``plan_image`` resolves model references to exact versions (``"iris"`` -> ``"iris:3"``), checks
the source directory, the entry script, the conda file and extra files, reads the requirement
lines, and asks the builder whether it can build the spec. Any problem raises (ValidationError,
ModelNotFoundError) naming the image, and nothing exists yet. The resulting ``BuildPlan`` is plain
data: the build runs from it, in this process or in a detached worker (it is saved as JSON).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from airflow_aml.compute.environments import read_conda_file
from airflow_aml.context import WorkspaceContext
from airflow_aml.exceptions import ModelNotFoundError, RunConfigurationError, ValidationError
from airflow_aml.images.builders import build_image_builder
from airflow_aml.images.onnx import require_converter
from airflow_aml.images.requirements import current_python
from airflow_aml.images.spec import ImageSpec
from airflow_aml.references import Reference
from airflow_aml.runconfig import validate_requirement
from airflow_aml.snapshots import list_source_files

_EXACT_PYTHON = re.compile(r"^([0-9]+)\.([0-9]+)(\.[0-9]+)?$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: int
    datastore: str  # the datastore that holds the version's files
    path: str  # their folder in it
    sha256: str | None = None  # their tree digest, recorded at registration (checked on download)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class BuildPlan:
    workspace: str
    name: str
    builder: str
    models: tuple[ModelEntry, ...]
    app_files: tuple[tuple[str, str], ...]  # (path inside app/, local file to copy)
    entry_script: str | None
    builtin_scorer: str | None
    requirements: tuple[str, ...]  # the user's lines: pip + the conda file's
    python: str  # "3.11"
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    datastore: str  # where the build log is stored (the workspace default at creation)
    version: int = 0  # known once the image version is created
    activity_id: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # as recorded on the image
    convert_to_onnx: bool = False  # the one model's scikit-learn pickle becomes model.onnx in the bundle

    @property
    def image_id(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.models]

    def with_image(self, version: int, activity_id: str) -> BuildPlan:
        return replace(self, version=version, activity_id=activity_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildPlan:
        return cls(
            **{
                **data,
                "models": tuple(ModelEntry(**m) for m in data["models"]),
                "app_files": tuple((str(rel), str(path)) for rel, path in data["app_files"]),
                "requirements": tuple(data["requirements"]),
            }
        )


def plan_image(workspace: WorkspaceContext, name: str, spec: ImageSpec, *, builder: str) -> BuildPlan:
    """Resolve and check everything; raises naming the image and creates nothing."""
    build_image_builder(builder, workspace).validate(spec)  # unknown kind: ValidationError listing kinds
    if spec.convert_to_onnx:
        require_converter(name)
    models = tuple(_resolve_model(workspace, name, reference) for reference in spec.models)

    source = _source_directory(name, spec)
    app_files: dict[str, str] = {}
    if source is not None:
        if spec.entry_script is not None:
            script = source / spec.entry_script
            if not script.is_file() or not script.resolve().is_relative_to(source.resolve()):
                raise ValidationError(
                    f"Image {name!r}: entry_script {spec.entry_script!r} not found in source_directory {str(source)!r}"
                )
        app_files.update(list_source_files(source))
        if spec.entry_script is not None and spec.entry_script not in app_files:
            raise ValidationError(
                f"Image {name!r}: entry_script {spec.entry_script!r} is excluded from source_directory "
                f"{str(source)!r} by its .amlignore/.gitignore"
            )
    extra_paths = []
    for extra in spec.extra_files:
        path = Path(extra).expanduser()
        if not path.exists():
            raise ValidationError(f"Image {name!r}: extra file {extra!r} does not exist")
        extra_paths.append(str(path.resolve()))
        found = [(path.name, str(path))] if path.is_file() else [
            (f"{path.name}/{rel}", file) for rel, file in list_source_files(path)
        ]
        for rel, file in found:
            if rel in app_files:
                raise ValidationError(f"Image {name!r}: extra file {extra!r} would overwrite app/{rel}")
            app_files[rel] = file

    requirements = list(spec.pip)
    python = current_python()
    conda_path = None
    if spec.conda_file is not None:
        conda_path = _conda_path(name, spec, source)
        try:
            conda = read_conda_file(conda_path)
        except RunConfigurationError as exc:
            raise ValidationError(f"Image {name!r}: {exc}") from exc
        for line in conda.requirements:
            try:
                validate_requirement(line)
            except ValueError as exc:
                raise ValidationError(f"Image {name!r}: conda file {str(conda_path)!r}: {exc}") from None
            if line not in requirements:
                requirements.append(line)
        if conda.python is not None:
            match = _EXACT_PYTHON.match(conda.python)
            if not match:
                raise ValidationError(
                    f"Image {name!r}: conda file {str(conda_path)!r} asks for python {conda.python!r}; an image "
                    "needs an exact version such as 3.11"
                )
            python = f"{match.group(1)}.{match.group(2)}"

    # The spec as recorded: exact model versions, absolute paths (the build may run elsewhere later).
    recorded = spec.to_dict()
    recorded["models"] = [m.id for m in models]
    if source is not None:
        recorded["source_directory"] = str(source.resolve())
    if conda_path is not None:
        recorded["conda_file"] = str(conda_path.resolve())
    recorded["extra_files"] = extra_paths
    return BuildPlan(
        workspace=workspace.name,
        name=name,
        builder=builder,
        models=models,
        app_files=tuple(sorted(app_files.items())),
        entry_script=spec.entry_script,
        builtin_scorer=spec.builtin_scorer,
        requirements=tuple(requirements),
        python=python,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        datastore=workspace.record.default_datastore,
        spec=recorded,
        convert_to_onnx=spec.convert_to_onnx,
    )


def _resolve_model(workspace: WorkspaceContext, image: str, reference: str) -> ModelEntry:
    model_name, version = Reference.parse(reference, "model")
    try:
        record = workspace.store.get_model_version(workspace.name, model_name, version)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"Image {image!r}: {exc}") from None
    return ModelEntry(
        name=record.name, version=record.version, datastore=record.datastore, path=record.path, sha256=record.sha256
    )


def _source_directory(name: str, spec: ImageSpec) -> Path | None:
    if spec.source_directory is None:
        return None
    source = Path(spec.source_directory).expanduser()
    if not source.is_dir():
        raise ValidationError(
            f"Image {name!r}: source_directory {spec.source_directory!r} does not exist or is not a folder"
        )
    return source


def _conda_path(name: str, spec: ImageSpec, source: Path | None) -> Path:
    assert spec.conda_file is not None
    path = Path(spec.conda_file).expanduser()
    if source is not None and not path.is_absolute():
        path = source / path
    if not path.is_file():
        raise ValidationError(f"Image {name!r}: conda file {str(path)!r} does not exist")
    return path
