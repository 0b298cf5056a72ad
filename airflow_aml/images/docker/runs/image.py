"""The image a docker run's script runs in, built in two cached steps with the image builder's code.

::

    FROM <base image>                     local/python-base:bookworm (docker/build-base-image.sh)
      venv at /opt/aml/venv, CA bundle, pip settings     \\
      pip install the run's requirements + the runtime's  |  aml-run-env:<hash>, one per environment
      airflow_aml as plain files on PYTHONPATH           /
    FROM aml-run-env:<hash>
      COPY the run's snapshot to /var/aml/run               aml-run:<hash>, one per environment + snapshot

Each tag is the sha256 of everything its build reads (Dockerfile, build context, build arguments):
an image with that tag already in the engine is used as it is, so a second run with the same
environment and source builds nothing, and one with new source only copies the snapshot. The
builds go through :func:`airflow_aml.images.docker.build.run_build` (the scoring images' build
loop: log lines, step progress, failed builds cleaned up) and the same Dockerfile pieces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import airflow_aml
from airflow_aml.compute.environments import resolve_requirements, runtime_requirements
from airflow_aml.images.docker.build import run_build
from airflow_aml.images.docker.context import BuildContext, _copy_tree, _write, _write_context_tar
from airflow_aml.images.docker.dockerfile import CERTS_DIR, SRC_DIR, VENV_DIR, _buildargs, _quote, _venv_script
from airflow_aml.images.docker.engine import _ensure_base_image
from airflow_aml.images.docker.options import LABEL_PREFIX
from airflow_aml.runconfig import EnvironmentSpec

if TYPE_CHECKING:
    import docker

    from airflow_aml.images.docker.options import DockerBuildOptions

LogFn = Callable[[str], None]

ENV_REPOSITORY = "aml-run-env"
RUN_REPOSITORY = "aml-run"
WORK_DIR = "/var/aml/run"  # the snapshot in the image, and the script's working folder
# Bump when the layout of the images changes: old tags are then not reused.
_FORMAT = 1
# Inside the container the store is the service, over HTTP: no database driver is needed.
_NOT_IN_IMAGE = re.compile(r"^(psycopg(-binary)?|apache-airflow.*|airflow-aml)$", re.IGNORECASE)
_PROBE = "import airflow_aml.runtime.run, airflow_aml.store.http.store; print('airflow_aml runtime imports OK')"


def image_requirements(spec: EnvironmentSpec, work: Path) -> tuple[list[str], str | None]:
    """(pip lines, python request) of the run's environment, plus the runtime's pinned lines."""
    if spec.kind == "current":
        requirements: list[str] = []
        python = None
    else:
        requirements, python = resolve_requirements(spec, work)
    runtime = [line for line in runtime_requirements(requirements, extra=("httpx",))
               if not _NOT_IN_IMAGE.match(re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0])]
    return [*sorted(set(requirements)), *runtime], python


def ensure_environment_image(
    api: docker.APIClient,
    options: DockerBuildOptions,
    *,
    requirements: Sequence[str],
    python: str | None,
    log: LogFn,
) -> str:
    """The tag of the environment image (base -> venv -> requirements -> airflow_aml), built if missing."""
    with tempfile.TemporaryDirectory(prefix="aml-run-env-") as tmp:
        context = Path(tmp) / "context"
        _write(context / "requirements.txt", "".join(f"{line}\n" for line in requirements))
        package = Path(airflow_aml.__file__).resolve().parent
        _copy_tree(package, context / "src" / "airflow_aml", ignore_pycache=True)
        if options.extra_ca_bundle is not None:
            (context / "certs").mkdir(parents=True)
            shutil.copyfile(options.extra_ca_bundle, context / "certs" / "extra-ca.pem")
        dockerfile = _environment_dockerfile(options, python, has_ca=options.extra_ca_bundle is not None)
        _write(context / "Dockerfile", dockerfile)
        # Workspaces and runs with identical environments share one image.
        tag = f"{ENV_REPOSITORY}:{_digest(context, options, extra=options.base_image)[:20]}"
        if _exists(api, tag):
            log(f"Using cached environment image {tag}")
            return tag
        _ensure_base_image(api, options.base_image, log)
        log(f"Building environment image {tag}: {' '.join(requirements) or '(no packages)'}")
        _build(api, options, context, tag, dockerfile, log)
    return tag


def ensure_run_image(
    api: docker.APIClient, options: DockerBuildOptions, *, env_image: str, work: Path, log: LogFn,
) -> str:
    """The tag of ``env_image`` + the snapshot extracted in ``work``, built if missing."""
    with tempfile.TemporaryDirectory(prefix="aml-run-image-") as tmp:
        context = Path(tmp) / "context"
        _copy_tree(work, context / "snapshot")
        chown = f"--chown={options.user} " if options.user else ""
        dockerfile = (
            "# Generated by airflow-aml's docker compute target: a run's snapshot on its environment.\n"
            f"FROM {env_image}\n"
            f"COPY {chown}snapshot/ {WORK_DIR}/\n"
            f"WORKDIR {WORK_DIR}\n"
            # Nothing run-specific here: the Dockerfile is part of the tag's hash.
            f"LABEL {_quote(LABEL_PREFIX + 'kind')}={_quote('run')}\n"
        )
        _write(context / "Dockerfile", dockerfile)
        tag = f"{RUN_REPOSITORY}:{_digest(context, options, extra=env_image)[:20]}"
        if _exists(api, tag):
            log(f"Using cached run image {tag}")
            return tag
        log(f"Building run image {tag} (snapshot on {env_image})")
        _build(api, options, context, tag, dockerfile, log)
    return tag


def _environment_dockerfile(options: DockerBuildOptions, python: str | None, *, has_ca: bool) -> str:
    # A python request the image cannot be checked against ('>=3.10') is left to pip to judge.
    wanted = python if python and re.fullmatch(r"\d+\.\d+(\.\d+)?", python) else None
    lines = [
        "# Generated by airflow-aml's docker compute target: the environment of runs.",
        f"FROM {options.base_image}",
        "ENV " + " \\\n    ".join([
            f"VIRTUAL_ENV={VENV_DIR}",
            f"PATH={VENV_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"PYTHONPATH={SRC_DIR}",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "PIP_NO_CACHE_DIR=1",
            "PIP_DISABLE_PIP_VERSION_CHECK=1",
            "PIP_NO_INPUT=1",
            "PIP_PROGRESS_BAR=off",
            "HOME=/tmp",
            "LANG=C.UTF-8",
        ]),
    ]
    if has_ca:
        bundle = f"{CERTS_DIR}/ca-bundle.pem"
        lines += [
            f"COPY certs/extra-ca.pem {CERTS_DIR}/extra-ca.pem",
            f"RUN cat /etc/ssl/certs/ca-certificates.crt {CERTS_DIR}/extra-ca.pem > {bundle} 2>/dev/null"
            f" || cp {CERTS_DIR}/extra-ca.pem {bundle}",
            f"ENV PIP_CERT={bundle} SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle}",
        ]
    lines += [f"ARG {arg}" for arg in _buildargs(options)]
    lines += [
        "RUN " + json.dumps(["python3", "-c", _venv_script(wanted)]),
        "COPY requirements.txt /opt/aml/requirements.txt",
        "RUN pip install -r /opt/aml/requirements.txt",
        f"COPY src/ {SRC_DIR}/",
        "RUN " + json.dumps(["python", "-c", _PROBE]),
        f"WORKDIR {WORK_DIR}",
        "LABEL " + _quote(f"{LABEL_PREFIX}kind") + "=" + _quote("run-environment"),
    ]
    return "\n".join(lines) + "\n"


def _build(
    api: docker.APIClient, options: DockerBuildOptions, context: Path, tag: str, dockerfile: str,
    log: LogFn,
) -> None:
    build = BuildContext(
        path=context, dockerfile=dockerfile, tag=tag, labels={}, buildargs=_buildargs(options),
        base_image=options.base_image, manifest={}, runtime_requirements=[],
    )
    tar_path = context.parent / "context.tar"
    _write_context_tar(context, tar_path)
    run_build(api, options, build, tar_path, lambda _fraction, _message: None, log)


def _digest(context: Path, options: DockerBuildOptions, *, extra: str) -> str:
    """sha256 of every path, mode bit and byte of ``context``, the build arguments and ``extra``."""
    digest = hashlib.sha256(json.dumps({"format": _FORMAT, "extra": extra,
                                        "buildargs": _buildargs(options)}, sort_keys=True).encode())
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            rel = path.relative_to(context).as_posix()
            digest.update(f"\0{rel}\0{os.access(path, os.X_OK)}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _exists(api: docker.APIClient, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        api.inspect_image(tag)
    except ImageNotFound:
        return False
    return True
