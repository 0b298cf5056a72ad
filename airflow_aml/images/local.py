"""The ``local`` image builder (the embedded default): the bundle plus a cached virtualenv.

The environment is built with uv by the same code as run environments
(``compute.environments.ensure_virtualenv``): the user's requirements, the runtime's and the
scoring server's dependencies pinned to this installation's versions (``requirements.py``), and
the ``.pth`` shim that exposes this ``airflow_aml`` package. It is cached under
``$AML_HOME/images/envs/<sha256 of the dependency spec>``: models, scoring code and image names
are not part of the key, so a new image (or a new model version) with unchanged dependencies
reuses the environment at once.

The result: ``location`` = the bundle folder, properties ``local.python`` (the environment's
interpreter, which serves the bundle) and ``local.env``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_aml.compute.environments import ensure_virtualenv, find_uv, package_dir
from airflow_aml.config import aml_home
from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import EnvironmentBuildError, ImageBuildError, ValidationError
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, LogFn, ProgressFn, register_image_builder
from airflow_aml.images.bundle import read_manifest
from airflow_aml.images.requirements import current_python, image_probe_imports, image_runtime_requirements
from airflow_aml.images.spec import ImageSpec

PROP_PYTHON = "local.python"
PROP_ENV = "local.env"
# Bump when the layout of an image environment changes: old caches are then ignored.
# 2: bytecode compiled at build time (a replica no longer compiles its libraries on every start).
_ENV_FORMAT = 2
_PROBE_MARKER = ".aml-image-probe.json"
_PROBE_TIMEOUT_S = 300
_TAIL_LINES = 30


def image_envs_dir() -> Path:
    return aml_home() / "images" / "envs"


class LocalImageBuilder(AbstractImageBuilder):
    kind = "local"

    def validate(self, spec: ImageSpec) -> None:
        try:
            find_uv()
        except EnvironmentBuildError as exc:
            raise ValidationError(f"The local image builder cannot build environments: {exc}") from exc

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        doc = read_manifest(bundle)
        requirements = [str(line) for line in doc.get("requirements") or []]
        builtin = doc.get("builtin_scorer")
        runtime = image_runtime_requirements(requirements, builtin)
        wanted_python = str(doc.get("python") or current_python())
        # This interpreter when it is the version asked for: no search, no download, and the
        # runtime pins were taken from it.
        same = wanted_python == current_python()
        python = sys.executable if same else wanted_python
        if record.spec.get("base_image"):
            log(f"Note: base_image {record.spec['base_image']!r} is used by the docker builder only")
        key_doc = {
            "format": _ENV_FORMAT,
            "kind": "image",
            "python": os.path.realpath(sys.executable) if same else wanted_python,
            "requirements": sorted(set(requirements)),
            "runtime": runtime,
            "package": str(package_dir()),
        }
        progress(0.0, "Preparing the Python environment")
        interpreter = ensure_virtualenv(
            image_envs_dir(), key_doc, python=python, requirements=requirements, runtime=runtime, log_fn=log
        )
        progress(0.9, "Checking the Python environment")
        _probe(Path(interpreter), image_probe_imports(builtin), record, log)
        progress(1.0, "Python environment ready")
        env = Path(interpreter).parent.parent
        return BuildResult(
            location=str(bundle), digest=bundle.name, properties={PROP_PYTHON: interpreter, PROP_ENV: str(env)}
        )


def _probe(interpreter: Path, modules: list[str], record: ImageRecord, log: LogFn) -> None:
    """Fail the build unless the environment imports what scoring needs; remembered per env."""
    env = interpreter.parent.parent
    marker = env / _PROBE_MARKER
    try:
        done = set(json.loads(marker.read_text()))
    except (OSError, ValueError):
        done = set()
    if set(modules) <= done:
        log(f"Environment already checked: imports {', '.join(modules)}")
        return
    try:
        probe = subprocess.run(
            [str(interpreter), "-c", f"import {', '.join(modules)}"],
            capture_output=True, text=True, check=False, timeout=_PROBE_TIMEOUT_S,
            cwd=env,  # not the caller's folder, which may hold an airflow_aml checkout
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(
            f"Checking the environment of image '{record.name}' version {record.version} timed out after "
            f"{_PROBE_TIMEOUT_S} s", image_id=record.id,
        ) from exc
    if probe.returncode != 0:
        tail = "\n".join(probe.stderr.splitlines()[-_TAIL_LINES:])
        log(tail)
        raise ImageBuildError(
            f"The environment of image '{record.name}' version {record.version} cannot import "
            f"{', '.join(modules)}:\n{tail}",
            image_id=record.id, error=tail,
        )
    log(f"Environment checked: imports {', '.join(modules)}")
    marker.write_text(json.dumps(sorted(done | set(modules))))


register_image_builder("local", LocalImageBuilder)
