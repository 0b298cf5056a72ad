"""IoT Edge modules: an image from the Docker builder as an Azure IoT Edge module.

    manifest, key = edge_manifest(ws, "iris-edge", image)           # validated deployment manifest
    deploy_edge_module(ws, "iris-edge", image, device_id="dev-1", hub_connection_secret="iothub")
    export_edge_module(ws, "iris-edge", image, "out/iris-edge")     # image.tar + deployment.json
    collect_edge_telemetry(ws, "iris-edge", "/var/lib/aml-edge/iris-edge")

``manifest.py`` builds the manifest, ``schema.py`` validates it (our schema, written from the
documented format), ``hub.py`` applies it through the IoT Hub SDK, ``export.py`` writes the
offline export, ``telemetry.py`` brings the module's request lines into the workspace.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.edge.export import export_module
from airflow_aml.deployments.edge.hub import HubTarget, apply_manifest
from airflow_aml.deployments.edge.manifest import (
    DEFAULT_HOST_FOLDER,
    EdgeModuleSpec,
    build_manifest,
    container_config,
    module_of,
)
from airflow_aml.deployments.edge.schema import validate_manifest
from airflow_aml.deployments.edge.telemetry import collect as collect_edge_telemetry
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.image import Image
from airflow_aml.names import validate_name
from airflow_aml.references import Reference
from airflow_aml.roles import Action
from airflow_aml.runtime.scoring import generate_key


def _docker_image(ctx: WorkspaceContext, image: Image | str) -> Image:
    if isinstance(image, str):
        ref = Reference.parse_id(image, "image") if ":" in image else None
        image = Image.get(ctx, ref.name, ref.version) if ref else Image.get(ctx, image)
    record = image.record
    if record.builder != "docker" or not record.location:
        raise ValidationError(
            f"Image '{record.name}:{record.version}' was built by the {record.builder!r} builder; an IoT Edge "
            f"module needs an image of the 'docker' builder (a Docker image reference)")
    return image


def edge_manifest(
    ctx: WorkspaceContext, name: str, image: Image | str, *, key: str | None = None, **spec: Any,
) -> tuple[dict[str, Any], str]:
    """The validated manifest of module ``name`` serving ``image``, and its scoring key (generated
    when not given; only its hash is in the manifest). ``spec``: ``EdgeModuleSpec`` fields."""
    ctx.require(Action.READ)
    validate_name("edge module", name)
    found = _docker_image(ctx, image)
    key = key or generate_key()
    fields = {f.name for f in dataclasses.fields(EdgeModuleSpec)} - {"name", "image", "key"}
    unknown = set(spec) - fields
    if unknown:
        raise ValidationError(f"Unknown edge module settings: {', '.join(sorted(unknown))}; valid: "
                              f"{', '.join(sorted(fields))}")
    return build_manifest(EdgeModuleSpec(name=name, image=str(found.record.location), key=key, **spec)), key


def deploy_edge_module(
    ctx: WorkspaceContext, name: str, image: Image | str, *, hub_connection_secret: str,
    device_id: str | None = None, target_condition: str | None = None, configuration_id: str | None = None,
    priority: int = 10, key: str | None = None, **spec: Any,
) -> dict[str, Any]:
    """Apply module ``name`` to one device or a device group through IoT Hub. The connection
    string is the workspace secret ``hub_connection_secret``, read now and stored nowhere.
    Returns ``{"manifest", "key", "applied"}``."""
    ctx.require(Action.WRITE)
    target = HubTarget(device_id=device_id, target_condition=target_condition,
                       configuration_id=configuration_id, priority=priority)
    manifest, key = edge_manifest(ctx, name, image, key=key, **spec)
    ctx.require(Action.READ_SECRETS)
    applied = apply_manifest(ctx.vault.get(hub_connection_secret), manifest, target)
    return {"manifest": manifest, "key": key, "applied": applied}


def export_edge_module(
    ctx: WorkspaceContext, name: str, image: Image | str, folder: str | Path, *, key: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """Write the offline export of module ``name`` into ``folder`` (see ``export.py``). Returns the
    export record plus ``key`` (the scoring key, given once) and ``manifest``."""
    ctx.require(Action.WRITE)
    manifest, key = edge_manifest(ctx, name, image, key=key, **spec)
    module = module_of(manifest, name)
    record = export_module(
        folder, name=name, reference=module["settings"]["image"], manifest=manifest,
        host_folder=spec.get("host_folder") or DEFAULT_HOST_FOLDER.format(name=name),
        host_port=int(spec.get("host_port") or 5001),
    )
    return {**record, "key": key, "manifest": manifest}


__all__ = [
    "EdgeModuleSpec",
    "HubTarget",
    "build_manifest",
    "collect_edge_telemetry",
    "container_config",
    "deploy_edge_module",
    "edge_manifest",
    "export_edge_module",
    "module_of",
    "validate_manifest",
]
