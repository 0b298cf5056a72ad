"""The build context: an image bundle laid out, with its Dockerfile, as the engine is sent it.

:func:`prepare_context` reads a bundle (never changing it) and writes into a folder::

    Dockerfile
    bundle/requirements.txt     the bundle's, without Airflow
    bundle/app/, bundle/models/, bundle/meta/ (image.json and the other top-level files)
    aml/runtime-requirements.txt, aml/src/airflow_aml/, aml/certs/extra-ca.pem (when set)

It also names the image (:func:`image_reference`) and labels it, so that the returned
:class:`BuildContext` is everything a build needs; :func:`_write_context_tar` makes the tar that
is sent to the engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import airflow_aml
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.bundle import bundle_digest
from airflow_aml.images.docker.dockerfile import _buildargs, render_dockerfile
from airflow_aml.images.docker.options import KIND, LABEL_PREFIX, _check_label
from airflow_aml.images.requirements import image_probe_imports, image_runtime_requirements

if TYPE_CHECKING:
    from airflow_aml.images.builders import LogFn as Log
    from airflow_aml.images.docker.options import DockerBuildOptions

BUILTIN_SCORERS = ("sklearn", "onnx")
# Never installed in an image: the runtime must work without Airflow (and without ourselves
# as a distribution: the package goes in as plain files).
_EXCLUDED_REQUIREMENTS = re.compile(r"^(apache-airflow(-.*)?|airflow-aml)$")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# A Docker reference: [registry[:port]/]path[:tag]; path components are lowercase, and the first
# component is a registry only if it has a '.' or a ':' or is "localhost" (as Docker reads it).
_REGISTRY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


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


# ------------------------------------------------------------------- requirements.txt filtering


def _requirement_name(line: str) -> str | None:
    # The distribution a requirements.txt line names; None for blanks, comments and pip options.
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = _REQ_NAME.match(text)
    return match.group(1) if match else None


def _normalize(name: str) -> str:
    # PEP 503 normalization, so that Apache_Airflow is left out like apache-airflow.
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------ the image's reference


def _docker_component(text: str) -> str:
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    value = re.sub(r"[._-]{2,}", "-", value).strip("._-")
    return value or "image"


def _docker_tag_part(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip(".-")
    return value[:128] or "latest"


def _split_reference(ref: str) -> tuple[str, str | None]:
    # A ':' in the last path component starts the tag; one before it is a registry's port.
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = ref.rpartition(":")
        return repository, tag
    return ref, None


# ------------------------------------------------------------------------------------- files


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
    # A hard link costs nothing for large models; another file system (or a refusal) gets a copy.
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
