"""Offline export for devices without a hub: the image tarball, the manifest and instructions.

The folder holds ``image.tar`` (``docker save`` of the module's image), ``deployment.json`` (the
manifest), ``export.json`` (image reference and id, the tarball's SHA-256) and ``INSTRUCTIONS.md``.
Idempotent: an export whose ``export.json`` already names the same image id and manifest is left
as it is, and files are written to temporary names then renamed, so a crash leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from airflow_aml.exceptions import DeploymentError
from airflow_aml.images.docker import docker_api_client

IMAGE_TAR = "image.tar"
MANIFEST_FILE = "deployment.json"
RECORD_FILE = "export.json"
INSTRUCTIONS_FILE = "INSTRUCTIONS.md"

INSTRUCTIONS = """\
# IoT Edge module {name} (exported by airflow-aml)

1. Copy this folder to the device and load the image: `docker load -i {tar}`
   (image {reference}, id {image_id}; `sha256sum {tar}` must print {tar_sha256}).
2. Create the telemetry folder the module binds: `mkdir -p {host_folder} && chmod 0777 {host_folder}`.
3. Deploy {manifest} with the IoT Edge runtime, e.g. `iotedge config` + a local manifest, or
   `az iot edge set-modules --device-id <device> --hub-name <hub> --content {manifest}` once online.
4. Score: `curl -H "Authorization: Bearer <key>" -H "Content-Type: application/json"
   -d '{{"data": ...}}' http://<device>:{host_port}/score`; the key was given once at export.
5. Bring `{host_folder}/requests.jsonl` back for `Workspace.collect_edge_telemetry`.
"""


def export_module(
    folder: str | Path, *, name: str, reference: str, manifest: dict[str, Any], host_folder: str, host_port: int,
    api: Any = None,
) -> dict[str, Any]:
    """Write the export of image ``reference`` into ``folder``; returns the ``export.json`` record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    own_api = api is None
    api = api or docker_api_client(timeout=600)
    try:
        try:
            image_id = str(api.inspect_image(reference)["Id"])
        except Exception as exc:
            raise DeploymentError(f"Edge module {name!r}: image {reference!r} is not in the Docker engine: {exc}",
                                  deployment=name) from exc
        manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        manifest_sha = hashlib.sha256(manifest_text.encode()).hexdigest()
        previous = _read_record(folder / RECORD_FILE)
        if (previous.get("image_id") == image_id and previous.get("manifest_sha256") == manifest_sha
                and _sha256(folder / IMAGE_TAR) == previous.get("tar_sha256")):
            return previous
        tar = folder / IMAGE_TAR
        tmp = tar.with_name(f".{IMAGE_TAR}.{os.getpid()}")
        digest = hashlib.sha256()
        with tmp.open("wb") as handle:
            for chunk in api.get_image(reference):  # the engine's `docker save` stream
                handle.write(chunk)
                digest.update(chunk)
        os.replace(tmp, tar)
        record = {
            "name": name, "reference": reference, "image_id": image_id, "tar": IMAGE_TAR,
            "tar_sha256": digest.hexdigest(), "manifest": MANIFEST_FILE, "manifest_sha256": manifest_sha,
            "host_folder": host_folder, "host_port": host_port,
        }
        _write(folder / MANIFEST_FILE, manifest_text)
        _write(folder / INSTRUCTIONS_FILE, INSTRUCTIONS.format(
            name=name, tar=IMAGE_TAR, reference=reference, image_id=image_id, tar_sha256=record["tar_sha256"],
            host_folder=host_folder, manifest=MANIFEST_FILE, host_port=host_port))
        _write(folder / RECORD_FILE, json.dumps(record, indent=2) + "\n")  # last: it marks a complete export
        return record
    finally:
        if own_api:
            api.close()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None
