"""``DockerImageBuilder``: an image bundle turned into a Docker image by a Docker engine.

The bundle (written by the image registry) is a folder::

    image.json          name, version, entry_script | builtin_scorer, models, schemas, python
    requirements.txt    the scoring code's dependencies
    app/                the scoring script and its helpers
    models/<name>/<version>/...

The builder writes a Dockerfile and a build context into a temporary folder and sends both to the
engine through the docker SDK. Layers go from the least to the most often changing, so that a new
model version with the same dependencies rebuilds only the last, cheap layers::

    FROM <base image>                         local/python-base:bookworm (docker/build-base-image.sh)
    1. venv at /opt/aml/venv, CA bundle, pip index settings, runtime environment
    2. requirements.txt + the scoring server's own dependencies -> pip install   (the slow layer)
    3. the airflow_aml package as plain files on PYTHONPATH, and a check that the runtime imports
       (and that Airflow is not in the image: the runtime must not need it)
    4. app/
    5. image.json (and any other top-level bundle file)
    6. models/

The container runs ``python -m airflow_aml.runtime.scoring --bundle /var/aml/bundle`` on
``$AML_HOST:$AML_PORT`` (default 127.0.0.1:5001), with ``--config $AML_SCORING_CONFIG`` when set,
as an unprivileged user (uid 10001).

The image is named after the ``ImageRecord`` being built (``aml/<name>:<version>``), as a bundle
is shared by image versions with identical content; its labels record workspace, name, version
and bundle digest. ``BuildResult.digest`` is the image id.

Engine access is in one function, :func:`docker_api_client`: the Airflow Docker provider's
``DockerHook`` when that provider is installed, else the docker SDK's ``docker.from_env()``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

import airflow_aml
from airflow_aml.exceptions import ImageBuildError, NotFoundError, ValidationError
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, register_image_builder
from airflow_aml.images.bundle import bundle_digest
from airflow_aml.images.requirements import image_probe_imports, image_runtime_requirements

if TYPE_CHECKING:
    import docker

    from airflow_aml.compute.base import WorkspaceLike
    from airflow_aml.images.spec import ImageSpec


KIND = "docker"
DEFAULT_BASE_IMAGE = "local/python-base:bookworm"
DEFAULT_TAG = "aml/{name}:{version}"
DEFAULT_PORT = 5001
DEFAULT_USER = "10001:10001"
DEFAULT_BUILD_TIMEOUT = 1800.0

VENV_DIR = "/opt/aml/venv"
SRC_DIR = "/opt/aml/src"
CERTS_DIR = "/opt/aml/certs"
BUNDLE_DIR = "/var/aml/bundle"
BASE_IMAGE_SCRIPT = "docker/build-base-image.sh"

LABEL_PREFIX = "airflow-aml."
BUILTIN_SCORERS = ("sklearn", "onnx")
# Never installed in an image: the runtime must work without Airflow (and without ourselves
# as a distribution: the package goes in as plain files).
_EXCLUDED_REQUIREMENTS = re.compile(r"^(apache-airflow(-.*)?|airflow-aml)$")

_HOOK_MODULE = "airflow.providers.docker.hooks.docker"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# A Docker reference: [registry[:port]/]path[:tag]; path components are lowercase, and the first
# component is a registry only if it has a '.' or a ':' or is "localhost" (as Docker reads it).
_REGISTRY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

Progress = Callable[[float, str], None]
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------- errors


class DockerImageError(ImageBuildError):
    """Something the Docker image builder could not do."""


class DockerEngineUnavailableError(DockerImageError):
    """No Docker engine answers at the configured address."""


class BaseImageMissingError(DockerImageError, NotFoundError):
    """The ``FROM`` image is neither in the engine nor pullable."""


class DockerBuildError(DockerImageError):
    """``docker build`` failed; ``step`` is the failing Dockerfile step, ``log_tail`` its last lines."""

    def __init__(self, message: str, *, step: str | None = None, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log_tail = log_tail or []


# -------------------------------------------------------------------------------------- options


class DockerBuildOptions(BaseModel):
    """How images are built. ``DockerBuildOptions.from_env()`` reads the ``AML_DOCKER_*`` variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_image: str = DEFAULT_BASE_IMAGE
    # PEM file added to the image's CA certificates for pip (and for the scoring code at run time):
    # the corporate proxy's CA. The base image's own bundle is kept.
    extra_ca_bundle: Path | None = None
    pip_index_url: str | None = None
    pip_extra_index_urls: list[str] = Field(default_factory=list)
    pip_trusted_hosts: list[str] = Field(default_factory=list)
    # Network of the build's RUN steps; "host" reaches a proxy on the host and needs no bridge.
    network_mode: str | None = "host"
    # A template: {name}, {version} and {workspace} are the image's (made Docker-safe).
    tag: str = DEFAULT_TAG
    labels: dict[str, str] = Field(default_factory=dict)
    build_timeout: float = Field(DEFAULT_BUILD_TIMEOUT, gt=0)
    # Who the container runs as; None keeps the base image's user (root for the default base).
    user: str | None = DEFAULT_USER
    no_cache: bool = False
    # Engine address (unix:///var/run/docker.sock, tcp://host:2376); None: $DOCKER_HOST or the default socket.
    docker_url: str | None = None
    # Airflow Docker connection used by the provider's hook to log in to a registry (provider path only).
    docker_conn_id: str | None = None

    @field_validator("base_image", "user", "network_mode", "pip_index_url", "docker_url")
    @classmethod
    def _one_word(cls, value: str | None) -> str | None:
        # These end up in a Dockerfile line or a space-separated pip setting.
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} must be one word without spaces")
        return value

    @field_validator("pip_extra_index_urls", "pip_trusted_hosts")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for item in value:
            cls._one_word(item)
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            _check_label(key, text)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DockerBuildOptions:
        """Options from the environment; ``overrides`` win.

        ``AML_DOCKER_BASE_IMAGE``, ``AML_DOCKER_TAG``, ``AML_DOCKER_BUILD_TIMEOUT``, ``AML_DOCKER_USER``
        (``root``/``none`` keep the base image's), ``AML_DOCKER_URL``, ``AML_DOCKER_NETWORK``
        (``default``: the engine's default network), and for pip ``AML_DOCKER_CA_BUNDLE``,
        ``AML_DOCKER_PIP_INDEX_URL``, ``AML_DOCKER_PIP_EXTRA_INDEX_URLS`` and
        ``AML_DOCKER_PIP_TRUSTED_HOSTS`` (space- or comma-separated). Unset pip settings fall back
        to this machine's own pip settings (``PIP_CERT``, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
        ``PIP_TRUSTED_HOST``): pip in the image trusts and uses what pip here does, which is what a
        machine behind a TLS-intercepting proxy needs. ``none`` turns a pip setting off.
        """
        env = os.environ if environ is None else environ

        def get(name: str, fallback: str | None = None) -> str | None:
            value = env.get(name) or (env.get(fallback) if fallback else None)
            value = value.strip() if value else None
            return None if not value or value.lower() == "none" else value

        def words(value: str | None) -> list[str] | None:
            return [part for part in re.split(r"[\s,]+", value) if part] if value else None

        values: dict[str, Any] = {
            "base_image": get("AML_DOCKER_BASE_IMAGE"),
            "tag": get("AML_DOCKER_TAG"),
            "build_timeout": get("AML_DOCKER_BUILD_TIMEOUT"),
            "docker_url": get("AML_DOCKER_URL"),
            "extra_ca_bundle": get("AML_DOCKER_CA_BUNDLE", "PIP_CERT"),
            "pip_index_url": get("AML_DOCKER_PIP_INDEX_URL", "PIP_INDEX_URL"),
            "pip_extra_index_urls": words(get("AML_DOCKER_PIP_EXTRA_INDEX_URLS", "PIP_EXTRA_INDEX_URL")),
            "pip_trusted_hosts": words(get("AML_DOCKER_PIP_TRUSTED_HOSTS", "PIP_TRUSTED_HOST")),
        }
        values = {key: value for key, value in values.items() if value is not None}
        if "AML_DOCKER_USER" in env:
            user = env["AML_DOCKER_USER"].strip()
            values["user"] = None if user.lower() in ("", "none", "root") else user
        if "AML_DOCKER_NETWORK" in env:
            network = env["AML_DOCKER_NETWORK"].strip()
            values["network_mode"] = None if network.lower() in ("", "default") else network
        values.update(overrides)
        return cls.model_validate(values)


# ------------------------------------------------------------------------------- build context


@dataclass
class BuildContext:
    """A ready build context: ``path`` holds ``Dockerfile`` and everything it copies."""

    path: Path
    dockerfile: str
    tag: str
    labels: dict[str, str]
    # Values of the Dockerfile's ARGs (pip index settings): passed to the build, never written
    # into the Dockerfile, as index URLs may carry credentials.
    buildargs: dict[str, str]
    base_image: str
    manifest: dict[str, Any]  # image.json as baked into the image (identity from the record)
    runtime_requirements: list[str]
    dropped_requirements: list[str] = field(default_factory=list)


def read_manifest(bundle: Path) -> dict[str, Any]:
    """``image.json`` with the fields the builder needs checked."""
    path = bundle / "image.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValidationError(f"Image bundle {str(bundle)!r} has no image.json") from exc
    except (OSError, ValueError) as exc:
        raise ValidationError(f"Image bundle {str(bundle)!r}: cannot read image.json: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValidationError(f"Image bundle {str(bundle)!r}: image.json must be a JSON object")
    for key in ("name", "version"):
        if manifest.get(key) in (None, ""):
            raise ValidationError(f"Image bundle {str(bundle)!r}: image.json has no {key!r}")
    scorer = manifest.get("builtin_scorer")
    if scorer is not None and scorer not in BUILTIN_SCORERS:
        raise ValidationError(
            f"Image bundle {str(bundle)!r}: unknown builtin_scorer {scorer!r} (known: {', '.join(BUILTIN_SCORERS)})"
        )
    python = manifest.get("python")
    if python is not None and not re.fullmatch(r"\d+\.\d+(\.\d+)?", str(python)):
        raise ValidationError(f"Image bundle {str(bundle)!r}: python {python!r} must look like '3.11'")
    return manifest


def image_reference(template: str, *, name: str, version: object, workspace: str | None = None) -> str:
    """The tag ``template`` filled in with Docker-safe parts; raises ``ValidationError`` if still invalid."""
    try:
        ref = template.format(
            name=_docker_component(str(name)),
            version=_docker_tag_part(str(version)),
            workspace=_docker_component(workspace or "default"),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"Docker tag template {template!r}: {exc!r} (use {{name}}, {{version}}, {{workspace}})"
        ) from exc
    repository, tag = _split_reference(ref)
    parts = repository.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        valid = bool(_REGISTRY.match(parts[0])) and all(_COMPONENT.match(p) for p in parts[1:])
    else:
        valid = all(_COMPONENT.match(p) for p in parts)
    if not valid or (tag is not None and not _TAG.match(tag)):
        raise ValidationError(f"{ref!r} is not a valid Docker image reference (from the template {template!r})")
    return ref


def render_dockerfile(
    manifest: Mapping[str, Any],
    options: DockerBuildOptions,
    *,
    labels: Mapping[str, str],
    has_ca_bundle: bool,
    probe_imports: Iterable[str] = (),
) -> str:
    """The Dockerfile for a context laid out by :func:`prepare_context`."""
    name, version = manifest["name"], manifest["version"]
    lines = [
        f"# Generated by airflow-aml's DockerImageBuilder for image {name}:{version}.",
        "# Layers go from the least to the most often changing: a new model with the same",
        "# dependencies rebuilds only the last layers.",
        f"FROM {options.base_image}",
        "",
        "# 1. Python environment, CA certificates and pip settings",
        "ENV " + " \\\n    ".join([
            f"AML_BUNDLE_DIR={BUNDLE_DIR}",
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
    if has_ca_bundle:
        bundle = f"{CERTS_DIR}/ca-bundle.pem"
        lines += [
            f"COPY aml/certs/extra-ca.pem {CERTS_DIR}/extra-ca.pem",
            # The base image's system bundle (if any) plus the extra CA: the extra one alone would
            # stop pip from trusting anything else.
            f"RUN cat /etc/ssl/certs/ca-certificates.crt {CERTS_DIR}/extra-ca.pem > {bundle} 2>/dev/null"
            f" || cp {CERTS_DIR}/extra-ca.pem {bundle}",
            f"ENV PIP_CERT={bundle} SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle}",
        ]
    # Values come as build arguments: index URLs may carry credentials, the Dockerfile does not.
    lines += [f"ARG {arg}" for arg in _buildargs(options)]
    lines += [
        "RUN " + json.dumps(["python3", "-c", _venv_script(manifest.get("python"))]),
        "",
        "# 2. Dependencies: the bundle's requirements.txt and the scoring server's own",
        f"COPY bundle/requirements.txt {BUNDLE_DIR}/requirements.txt",
        "COPY aml/runtime-requirements.txt /opt/aml/runtime-requirements.txt",
        f"RUN pip install -r {BUNDLE_DIR}/requirements.txt -r /opt/aml/runtime-requirements.txt",
        "",
        "# 3. The airflow_aml package as plain files: only airflow_aml.runtime runs here, without Airflow",
        f"COPY aml/src/ {SRC_DIR}/",
    ]
    probe = list(probe_imports)
    if probe:
        lines.append("RUN " + json.dumps(["python", "-c", _probe_script(probe)]))
    lines += [
        "",
        "# 4. Scoring code",
        f"COPY bundle/app/ {BUNDLE_DIR}/app/",
        "",
        "# 5. Manifest",
        f"COPY bundle/meta/ {BUNDLE_DIR}/",
        "",
        "# 6. Models",
        f"COPY bundle/models/ {BUNDLE_DIR}/models/",
        "",
        f"WORKDIR {BUNDLE_DIR}",
    ]
    if options.user:
        lines.append(f"USER {options.user}")
    lines += [
        f"EXPOSE {DEFAULT_PORT}",
        # Shell form, so that AML_HOST / AML_PORT / AML_SCORING_CONFIG given to `docker run -e` apply.
        f"CMD exec python -m airflow_aml.runtime.scoring --bundle {BUNDLE_DIR}"
        f' --host "${{AML_HOST:-127.0.0.1}}" --port "${{AML_PORT:-{DEFAULT_PORT}}}"'
        ' ${AML_SCORING_CONFIG:+--config "$AML_SCORING_CONFIG"}',
    ]
    if labels:
        lines.append("LABEL " + " \\\n      ".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(labels.items())))
    return "\n".join(lines) + "\n"


def prepare_context(
    bundle: Path,
    options: DockerBuildOptions,
    dest: Path,
    *,
    record: Any = None,
    log: Log | None = None,
) -> BuildContext:
    """Write the Dockerfile and the build context for ``bundle`` into the folder ``dest``.

    ``record`` (the ``ImageRecord`` being built) names the image: workspace, name, version, the
    bundle digest and the spec's ``base_image``. Without it the names come from ``image.json``.
    The bundle is only read. Its files are hard-linked into the context when ``dest`` is on the
    same file system, copied otherwise; symbolic links are followed.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise ValidationError(f"Image bundle {str(bundle)!r} is not a folder")
    manifest = read_manifest(bundle)
    emit = log or (lambda _line: None)
    dest.mkdir(parents=True, exist_ok=True)

    # Identity: a bundle is shared by the image versions with the same content, and its image.json
    # names the first of them; the image being built is the record's.
    workspace = getattr(record, "workspace", None) or None
    name = getattr(record, "name", None) or manifest["name"]
    version = getattr(record, "version", None) or manifest["version"]
    manifest = {**manifest, "name": name, "version": version}
    spec = getattr(record, "spec", None) or {}
    if isinstance(spec, Mapping) and spec.get("base_image"):
        options = options.model_copy(update={"base_image": str(spec["base_image"])})

    # requirements.txt, without Airflow (the runtime must not need it).
    req_path = bundle / "requirements.txt"
    lines = req_path.read_text(encoding="utf-8").splitlines() if req_path.is_file() else []
    kept, dropped = [], []
    for line in lines:
        req = _requirement_name(line)
        if req and _EXCLUDED_REQUIREMENTS.match(_normalize(req)):
            dropped.append(line.strip())
        else:
            kept.append(line)
    for line in dropped:
        emit(f"requirements.txt: leaving out {line!r}: images run the scoring runtime without Airflow")
    scorer = manifest.get("builtin_scorer")
    runtime_reqs = [
        line for line in image_runtime_requirements(kept, scorer)
        if not _EXCLUDED_REQUIREMENTS.match(_normalize(_requirement_name(line) or ""))
    ]
    _write(dest / "bundle" / "requirements.txt", "".join(f"{line}\n" for line in kept))
    _write(dest / "aml" / "runtime-requirements.txt", "".join(f"{line}\n" for line in runtime_reqs))

    if options.extra_ca_bundle is not None:
        ca = Path(options.extra_ca_bundle)
        if not ca.is_file():
            raise ValidationError(f"extra_ca_bundle {str(ca)!r} is not a file")
        (dest / "aml" / "certs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca, dest / "aml" / "certs" / "extra-ca.pem")

    # The package as files: the whole of airflow_aml, of which only airflow_aml.runtime is imported.
    package = Path(airflow_aml.__file__).resolve().parent
    _copy_tree(package, dest / "aml" / "src" / "airflow_aml", ignore_pycache=True)

    # app/ and models/ (empty when the bundle has none), then the other top-level entries.
    for sub in ("app", "models"):
        target = dest / "bundle" / sub
        if (bundle / sub).is_dir():
            _copy_tree(bundle / sub, target)
        else:
            target.mkdir(parents=True, exist_ok=True)
    meta = dest / "bundle" / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    for entry in sorted(bundle.iterdir()):
        if entry.name in ("app", "models", "requirements.txt", "image.json"):
            continue
        if entry.is_dir():
            _copy_tree(entry, meta / entry.name)
        else:
            _link_or_copy(entry, meta / entry.name)
    _write(meta / "image.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    digest = getattr(record, "digest", None) or bundle_digest(bundle)
    labels = {
        f"{LABEL_PREFIX}builder": KIND,
        **({f"{LABEL_PREFIX}workspace": str(workspace)} if workspace else {}),
        f"{LABEL_PREFIX}name": str(name),
        f"{LABEL_PREFIX}version": str(version),
        f"{LABEL_PREFIX}bundle-digest": str(digest),
        f"{LABEL_PREFIX}models": ",".join(f"{m.get('name')}:{m.get('version')}" for m in manifest.get("models") or []),
        "org.opencontainers.image.title": str(name),
        "org.opencontainers.image.version": str(version),
        **options.labels,
    }
    for key, value in labels.items():
        _check_label(key, value)
    tag = image_reference(options.tag, name=str(name), version=version, workspace=workspace)
    dockerfile = render_dockerfile(
        manifest,
        options,
        labels=labels,
        has_ca_bundle=options.extra_ca_bundle is not None,
        probe_imports=image_probe_imports(scorer),
    )
    _write(dest / "Dockerfile", dockerfile)
    return BuildContext(
        path=dest,
        dockerfile=dockerfile,
        tag=tag,
        labels=labels,
        buildargs=_buildargs(options),
        base_image=options.base_image,
        manifest=manifest,
        runtime_requirements=runtime_reqs,
        dropped_requirements=dropped,
    )


# ------------------------------------------------------------------------------------- engine


def docker_api_client(options: DockerBuildOptions | None = None, *, timeout: float = 60) -> docker.APIClient:
    """A connected low-level ``docker.APIClient``.

    The Airflow Docker provider's ``DockerHook`` when it is installed (it adds registry login from
    ``docker_conn_id``), else the docker SDK from the environment (``DOCKER_HOST`` ...).
    Raises :class:`DockerEngineUnavailableError` when no engine answers.
    """
    options = options or DockerBuildOptions()
    url = engine_url(options)
    try:
        import docker
    except ImportError as exc:
        raise DockerImageError(
            "The docker Python package is not installed: pip install 'airflow-aml[docker]'"
        ) from exc
    import requests

    hook_class = _docker_hook_class()
    try:
        if hook_class is not None:
            try:
                hook = hook_class(docker_conn_id=options.docker_conn_id, base_url=url, timeout=int(timeout))
                return hook.api_client
            except Exception as exc:  # the hook wraps every connection failure in AirflowException
                if type(exc).__name__ != "AirflowException":
                    raise
                raise docker.errors.DockerException(str(exc)) from exc
        if options.docker_url:
            client = docker.APIClient(base_url=options.docker_url, timeout=int(timeout))
        else:
            client = docker.from_env(timeout=int(timeout)).api
        client.ping()
        return client
    except (docker.errors.DockerException, OSError, requests.RequestException) as exc:
        raise DockerEngineUnavailableError(
            f"Docker engine not reachable at {url}; start dockerd (as root, scripts/docker-service.sh "
            f"installs and starts it) or point DOCKER_HOST / AML_DOCKER_URL at a running engine ({exc})"
        ) from exc


def _docker_hook_class() -> Any:
    """The Airflow Docker provider's ``DockerHook`` when that provider is installed, else None.

    Asks the package metadata first: importing ``airflow`` only to find the provider missing
    would cost seconds.
    """
    module = sys.modules.get(_HOOK_MODULE)
    if module is None:
        try:
            metadata.distribution("apache-airflow-providers-docker")
        except metadata.PackageNotFoundError:
            return None
        try:
            module = importlib.import_module(_HOOK_MODULE)
        except ImportError:
            return None
    return getattr(module, "DockerHook", None)


def engine_url(options: DockerBuildOptions | None = None) -> str:
    """The engine address the builder uses, for messages."""
    if options is not None and options.docker_url:
        return options.docker_url
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def remove_image(ref: str, *, force: bool = False, options: DockerBuildOptions | None = None) -> bool:
    """Remove the image ``ref`` (and its now-unused layers); False when there was no such image."""
    from docker.errors import ImageNotFound

    api = docker_api_client(options)
    try:
        api.remove_image(ref, force=force)
    except ImageNotFound:
        return False
    finally:
        api.close()
    return True


# ------------------------------------------------------------------------------------ builder


class DockerImageBuilder(AbstractImageBuilder):
    """Builds an image bundle into a local Docker image, ``aml/<name>:<version>`` by default.

    ``BuildResult.location`` is the image reference (the tag), ``BuildResult.digest`` the image id
    (``sha256:...``: a local image has no registry digest until it is pushed).
    """

    kind = KIND

    def __init__(
        self,
        workspace: WorkspaceLike | None = None,
        options: DockerBuildOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(workspace)  # type: ignore[arg-type]
        if options is None:
            self.options = DockerBuildOptions.from_env(**overrides)
        elif isinstance(options, DockerBuildOptions):
            self.options = options.model_copy(update=overrides) if overrides else options
        else:
            self.options = DockerBuildOptions.model_validate({**options, **overrides})

    def __repr__(self) -> str:
        name = getattr(self.workspace, "name", None)
        return f"{type(self).__name__}(workspace={name!r}, base_image={self.options.base_image!r})"

    def validate(self, spec: ImageSpec) -> None:
        """The docker SDK must be installed; the engine itself is checked when the build starts."""
        try:
            import docker  # noqa: F401
        except ImportError as exc:
            raise ValidationError(
                "The docker image builder needs the docker Python package: pip install 'airflow-aml[docker]'"
            ) from exc

    def build(self, bundle: Path, record: Any, progress: Progress, log: Log) -> BuildResult:
        """Build ``bundle`` into an image named after ``record`` (the ``ImageRecord`` being built)."""
        progress(0.0, "Preparing the Docker build context")
        with tempfile.TemporaryDirectory(prefix="aml-docker-build-") as tmp:
            context = prepare_context(Path(bundle), self.options, Path(tmp) / "context", record=record, log=log)
            log(f"Dockerfile for {context.tag}:")
            for line in context.dockerfile.splitlines():
                log(f"  {line}")
            api = docker_api_client(self.options)
            try:
                _ensure_base_image(api, context.base_image, log)
                tar_path = Path(tmp) / "context.tar"
                size = _write_context_tar(context.path, tar_path)
                progress(0.03, f"Sending the build context ({size / 1e6:.1f} MB) to the Docker engine")
                self._run_build(api, context, tar_path, progress, log)
                info = api.inspect_image(context.tag)
            finally:
                api.close()
        image_id = info["Id"]
        progress(1.0, f"Built {context.tag} ({image_id[:19]})")
        return BuildResult(
            location=context.tag,
            digest=image_id,
            properties={
                "docker.image_id": image_id,
                "docker.base_image": context.base_image,
                "docker.size_bytes": str(info.get("Size", "")),
            },
        )

    def remove_image(self, ref: str, *, force: bool = False) -> bool:
        """Remove the image ``ref`` from the engine; False when it did not exist."""
        return remove_image(ref, force=force, options=self.options)

    def _run_build(
        self, api: docker.APIClient, context: BuildContext, tar_path: Path, progress: Progress, log: Log
    ) -> str | None:
        """Send the context, follow the build; on failure remove the layers this build made."""
        import requests

        options = self.options
        started = time.monotonic()
        deadline = started + options.build_timeout
        tail: deque[str] = deque(maxlen=30)
        step: str | None = None
        step_cached = False
        created: list[str] = []  # intermediate images this build made (not found in the cache)
        image_id: str | None = None

        def failed(message: str) -> DockerBuildError:
            _remove_quietly(api, reversed(created))
            return DockerBuildError(message, step=step, log_tail=list(tail))

        try:
            with open(tar_path, "rb") as fileobj:
                stream = api.build(
                    fileobj=fileobj,
                    custom_context=True,
                    tag=context.tag,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    nocache=options.no_cache,
                    network_mode=options.network_mode,
                    buildargs=context.buildargs or None,
                    decode=True,
                    timeout=int(options.build_timeout),
                )
                for line, chunk in _log_lines(stream):
                    if chunk is not None:
                        if "error" in chunk or "errorDetail" in chunk:
                            detail = chunk.get("errorDetail") or {}
                            message = str(detail.get("message") or chunk.get("error") or "unknown error").strip()
                            raise failed(_failure_message(context.tag, step, message, tail))
                        aux = chunk.get("aux")
                        if isinstance(aux, dict) and aux.get("ID"):
                            image_id = aux["ID"]
                        continue
                    assert line is not None
                    log(line)
                    tail.append(line)
                    match = _STEP.match(line)
                    if match:
                        n, m = int(match.group(1)), int(match.group(2))
                        step, step_cached = line, match.group(3).startswith("FROM ")
                        tail.clear()
                        tail.append(line)
                        progress(0.05 + 0.9 * (n - 1) / m, f"Step {n}/{m}: {match.group(3)[:80]}")
                    elif line.strip() == "---> Using cache":
                        step_cached = True
                    elif (layer := _LAYER.match(line)) and not step_cached:
                        created.append(layer.group(1))
                    if time.monotonic() > deadline:
                        where = f" in {step}" if step else ""
                        limit = f"{options.build_timeout:.0f} s"
                        raise failed(f"Docker build of {context.tag} timed out after {limit}{where}")
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            what = "timed out" if elapsed >= options.build_timeout * 0.99 else "lost the Docker engine"
            where = f" in {step}" if step else ""
            raise failed(f"Docker build of {context.tag} {what} after {elapsed:.0f} s{where}: {exc}") from exc
        return image_id


def register() -> None:
    """Register ``DockerImageBuilder`` as the ``docker`` image builder kind (done on import)."""
    register_image_builder(KIND, DockerImageBuilder)


# ------------------------------------------------------------------------------------ helpers


def _ensure_base_image(api: docker.APIClient, base_image: str, log: Log) -> None:
    from docker.errors import DockerException, ImageNotFound

    try:
        api.inspect_image(base_image)
        return
    except ImageNotFound:
        pass
    script = BASE_IMAGE_SCRIPT
    if base_image != DEFAULT_BASE_IMAGE:
        script = f"AML_BASE_IMAGE={base_image} {script}"
    hint = (
        f"Base image {base_image!r} is not in the Docker engine. Make it with {script} "
        f"(debootstrap + docker import, no registry needed), or set DockerBuildOptions.base_image / "
        f"AML_DOCKER_BASE_IMAGE to an image the engine has or can pull"
    )
    if base_image.startswith("local/"):
        raise BaseImageMissingError(hint)
    log(f"Base image {base_image} not present: pulling it")
    try:
        api.pull(base_image)
        api.inspect_image(base_image)
    except DockerException as exc:
        raise BaseImageMissingError(f"{hint} (pull failed: {exc})") from exc


def _remove_quietly(api: docker.APIClient, image_ids: Iterable[str]) -> None:
    """Remove images, children first, leaving any that another image or container still uses."""
    from docker.errors import DockerException

    for image_id in image_ids:
        with contextlib.suppress(DockerException):
            api.remove_image(image_id, noprune=True)


def _log_lines(stream: Iterable[dict[str, Any]]) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    """(line, None) for each complete log line of the build, (None, chunk) for the other messages."""
    pending = ""
    for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        text = chunk.get("stream")
        if text is None and chunk.get("status"):  # pull progress
            status = str(chunk["status"])
            text = f"{status} {chunk.get('progress', '')}".rstrip() + "\n"
            if chunk.get("progressDetail"):  # a byte counter: too chatty for a log
                text = None
        if text is not None:
            pending += str(text)
            *complete, pending = re.split(r"\r?\n", pending)
            for line in complete:
                if line.strip():
                    yield line.rstrip(), None
        if set(chunk) - {"stream", "status", "progress", "progressDetail", "id"}:
            if pending.strip():
                yield pending.rstrip(), None
                pending = ""
            yield None, chunk
    if pending.strip():
        yield pending.rstrip(), None


def _failure_message(tag: str, step: str | None, message: str, tail: Iterable[str]) -> str:
    where = f" at {step}" if step else ""
    lines = list(tail)[-15:]
    text = f"Docker build of {tag} failed{where}: {message}"
    if lines:
        text += "\nLast log lines:\n" + "\n".join(f"  {line}" for line in lines)
    return text


def _venv_script(python: object) -> str:
    """The Python run by step 1: check the base image's Python against the bundle's, make the venv."""
    check = ""
    if python is not None:
        want = ".".join(str(python).split(".")[:2])  # the minor version decides; any patch level does
        check = (
            f"want = {want!r}; have = '%d.%d' % sys.version_info[:2]\n"
            "if have != want:\n"
            "    sys.exit(f'The base image has Python {have} but the bundle needs Python {want}: '\n"
            "             'use a base image with that Python (DockerBuildOptions.base_image)')\n"
        )
    return f"import sys, venv\n{check}venv.create({VENV_DIR!r}, with_pip=True)\n"


def _probe_script(modules: list[str]) -> str:
    """The Python run after the package is copied: the runtime imports, and Airflow is absent."""
    return (
        "import importlib, importlib.util, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "if importlib.util.find_spec('airflow') is not None:\n"
        "    sys.exit('apache-airflow is installed in the image: the scoring runtime must run without it')\n"
        f"print('Runtime imports OK: ' + ', '.join({modules!r}))\n"
    )


def _buildargs(options: DockerBuildOptions) -> dict[str, str]:
    args = {}
    if options.pip_index_url:
        args["PIP_INDEX_URL"] = options.pip_index_url
    if options.pip_extra_index_urls:
        args["PIP_EXTRA_INDEX_URL"] = " ".join(options.pip_extra_index_urls)
    if options.pip_trusted_hosts:
        args["PIP_TRUSTED_HOST"] = " ".join(options.pip_trusted_hosts)
    return args


def _requirement_name(line: str) -> str | None:
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = _REQ_NAME.match(text)
    return match.group(1) if match else None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _docker_component(text: str) -> str:
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    value = re.sub(r"[._-]{2,}", "-", value).strip("._-")
    return value or "image"


def _docker_tag_part(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip(".-")
    return value[:128] or "latest"


def _split_reference(ref: str) -> tuple[str, str | None]:
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = ref.rpartition(":")
        return repository, tag
    return ref, None


def _check_label(key: str, value: str) -> None:
    if not _LABEL_KEY.match(key):
        raise ValidationError(f"Docker label key {key!r}: use letters, digits, '.', '-', '_' and '/'")
    if any(c in value for c in "\n\r\0"):
        raise ValidationError(f"Docker label {key!r}: the value must be one line")


def _quote(text: str) -> str:
    # A Dockerfile string: quotes and backslashes escaped, and $ escaped against substitution.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _copy_tree(src: Path, dest: Path, *, ignore_pycache: bool = False) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        if ignore_pycache:
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            if ignore_pycache and filename.endswith((".pyc", ".pyo")):
                continue
            _link_or_copy(Path(dirpath) / filename, dest / rel / filename)


def _link_or_copy(src: Path, dest: Path) -> None:
    real = src.resolve()
    try:
        os.link(real, dest)
    except OSError:
        shutil.copyfile(real, dest)


def _write_context_tar(context: Path, tar_path: Path) -> int:
    """Tar the context with normalized metadata: root-owned, world-readable (the container runs
    as an unprivileged user), no matter what modes or owners the bundle's files had."""
    with tarfile.open(tar_path, "w") as tar:
        for dirpath, dirnames, filenames in os.walk(context):
            dirnames.sort()
            base = Path(dirpath)
            rel_dir = base.relative_to(context)
            if rel_dir != Path("."):
                tar.addfile(_tarinfo(rel_dir.as_posix(), base, directory=True))
            for filename in sorted(filenames):
                path = base / filename
                info = _tarinfo((rel_dir / filename).as_posix(), path, directory=False)
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    return tar_path.stat().st_size


def _tarinfo(name: str, path: Path, *, directory: bool) -> tarfile.TarInfo:
    st = path.stat()
    info = tarfile.TarInfo(name)
    info.mtime = int(st.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    return info


register()
