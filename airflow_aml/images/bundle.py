"""The image bundle: a folder holding everything the scoring server needs, addressed by content.

Layout (a contract shared with the scoring server and the Docker builder)::

    <bundle>/image.json      {"name", "version", "entry_script" (relative to app/) | null,
                              "builtin_scorer" | null,
                              "models": [{"name", "version", "path": "models/<name>/<version>"}],
                              "input_schema", "output_schema",
                              "requirements": [...the user's requirement lines...], "python": "3.11"}
    <bundle>/models/<name>/<version>/...   the model version's files
    <bundle>/app/...                        the source directory (scoring script) and extra files
    <bundle>/requirements.txt               the user's requirement lines, one per line

The digest is the SHA-256 over the sorted (relative path, file SHA-256) pairs, where image.json
counts without its "name" and "version": identical content gives an identical digest whatever the
image is called. Bundles live in ``$AML_HOME/images/bundles/<digest>/``, are built in a temporary
folder and renamed into place, and a bundle that already exists is reused. Image versions with the
same content therefore share one folder, whose image.json names the first of them: the serving
identity comes from the image record, not from the bundle.

Bundles are never changed after the rename; treat them as read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_aml.config import aml_home
from airflow_aml.datastores.base import AbstractDatastore
from airflow_aml.hashing import sha256_file, tree_sha256, verify_tree
from airflow_aml.images.onnx import ONNX_NAME, convert_model_folder
from airflow_aml.images.plan import BuildPlan

MANIFEST = "image.json"
REQUIREMENTS = "requirements.txt"
APP_DIR = "app"
MODELS_DIR = "models"
# Fields of image.json left out of the digest: they name the image, they are not its content.
IDENTITY_FIELDS = ("name", "version")

ProgressFn = Callable[[float, str], None]
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class Bundle:
    path: Path
    digest: str
    reused: bool  # an identical bundle existed already


def bundles_dir() -> Path:
    return aml_home() / "images" / "bundles"


def bundle_path(digest: str) -> Path:
    return bundles_dir() / digest


def manifest(plan: BuildPlan) -> dict[str, Any]:
    """The content of image.json for ``plan``."""
    return {
        "name": plan.name,
        "version": plan.version,
        "entry_script": plan.entry_script,
        "builtin_scorer": plan.builtin_scorer,
        "models": [
            {"name": m.name, "version": m.version, "path": f"{MODELS_DIR}/{m.name}/{m.version}"} for m in plan.models
        ],
        "input_schema": plan.input_schema,
        "output_schema": plan.output_schema,
        "requirements": list(plan.requirements),
        "python": plan.python,
    }


def read_manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((Path(bundle) / MANIFEST).read_text())


def bundle_digest(root: Path) -> str:
    """The content digest of the bundle folder ``root`` (see the module docstring)."""
    root = Path(root)
    entries = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            file = Path(current, name)
            rel = file.relative_to(root).as_posix()
            if rel == MANIFEST:
                doc = {k: v for k, v in read_manifest(root).items() if k not in IDENTITY_FIELDS}
                entries.append((rel, hashlib.sha256(_canonical(doc)).hexdigest()))
            else:
                entries.append((rel, sha256_file(file)))
    return tree_sha256(entries)


def assemble_bundle(
    plan: BuildPlan,
    datastore_for: Callable[[str], AbstractDatastore],
    *,
    progress: ProgressFn,
    log: LogFn,
) -> Bundle:
    """Build the bundle of ``plan`` (or find the identical one); ``progress`` goes 0.0 -> 1.0.

    ``datastore_for(name)`` gives the datastore holding a model version's files.
    """
    root = bundles_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        steps = len(plan.models) + 2
        for index, model in enumerate(plan.models):
            progress(index / steps, f"Downloading model {model.id}")
            target = tmp / MODELS_DIR / model.name / str(model.version)
            target.mkdir(parents=True)
            files = datastore_for(model.datastore).download(target, model.path, overwrite=False, show_progress=False)
            verify_tree(target, files, model.sha256, f"Model '{model.name}' version {model.version}")
            log(f"Model {model.id}: {len(files)} file(s) from datastore {model.datastore!r} ({model.path})")
            if plan.convert_to_onnx:
                progress((index + 0.5) / steps, f"Converting model {model.id} to ONNX")
                source_name, what = convert_model_folder(target)
                log(f"Model {model.id}: {source_name} ({what}) converted to {ONNX_NAME}; "
                    "its predictions checked against the original")
        progress(len(plan.models) / steps, f"Copying {len(plan.app_files)} application file(s)")
        app = tmp / APP_DIR
        app.mkdir()
        for rel, source in plan.app_files:
            destination = app.joinpath(*rel.split("/"))
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        scoring = f"entry script {plan.entry_script}" if plan.entry_script else f"built-in scorer {plan.builtin_scorer}"
        log(f"Application: {len(plan.app_files)} file(s), {scoring}")
        (tmp / REQUIREMENTS).write_text("".join(f"{line}\n" for line in plan.requirements))
        (tmp / MANIFEST).write_text(json.dumps(manifest(plan), indent=2, sort_keys=True) + "\n")
        progress((steps - 1) / steps, "Hashing the bundle")
        digest = bundle_digest(tmp)
        final = bundle_path(digest)
        reused = _publish(tmp, final)
        log(f"Bundle {digest[:12]} {'reused' if reused else 'created'}: {final}")
        progress(1.0, f"Bundle {digest[:12]} ready")
        return Bundle(path=final, digest=digest, reused=reused)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> bool:
    """Rename ``tmp`` to ``final``; True (and ``tmp`` is discarded) when ``final`` exists already."""
    if final.is_dir():
        return True
    try:
        os.rename(tmp, final)  # atomic: a bundle folder is complete or absent
    except OSError:
        if final.is_dir():  # another build of the same content won the race
            return True
        raise
    with contextlib.suppress(OSError):
        final.chmod(0o755)  # mkdtemp made it 0700
    return False


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
