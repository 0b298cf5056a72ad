"""An image from the Docker builder as an Azure IoT Edge module: its deployment manifest.

The manifest is the documented IoT Edge format: ``modulesContent`` with ``$edgeAgent`` (the
runtime, the two system modules and our module: image, ``createOptions``, env, restart policy)
and ``$edgeHub`` (routes of the module's telemetry output upstream, store-and-forward). It is
validated against our schema (``schema.py``) before it leaves this module.

How the module runs the same scoring server as a web service: ``createOptions`` overrides the
image's command to write the scoring config from the ``AML_SCORING_CONFIG`` variable (it holds
the key's SHA-256 hash, never the key) and start ``airflow_aml.runtime.scoring`` on port 5001;
its telemetry file lands in a host folder bound at ``TELEMETRY_DIR``, which ``telemetry.py``
collects into the workspace as a web service's supervisor does with its front's file.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from airflow_aml.deployments.edge.schema import validate_manifest
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.docker import BUNDLE_DIR
from airflow_aml.runtime.scoring import ScoringConfig, hash_key

MODULE_PORT = 5001  # inside the container
TELEMETRY_DIR = "/var/aml/edge"  # inside the container; bound to ``EdgeModuleSpec.host_folder``
TELEMETRY_FILE = "requests.jsonl"
ENV_SCORING_CONFIG = "AML_SCORING_CONFIG"
DEFAULT_HOST_FOLDER = "/var/lib/aml-edge/{name}"
EDGE_RUNTIME_TAG = "1.5"  # the system modules' images (mcr.microsoft.com/azureiotedge-*)
TELEMETRY_OUTPUT = "telemetry"


@dataclass(frozen=True)
class EdgeModuleSpec:
    """What one module is made of. ``key`` is the scoring key; only its hash enters the manifest."""

    name: str
    image: str  # the Docker image reference the device pulls (or loads from the exported tarball)
    key: str
    version: str = "1.0"
    host_port: int = MODULE_PORT
    host_ip: str = ""  # "" binds every interface, as the edge agent does by default
    host_folder: str | None = None  # where telemetry lands on the device
    # "host": the module shares the device's network (documented for createOptions' HostConfig);
    # the server then listens on host_port itself and no port is published.
    network_mode: str | None = None
    restart_policy: str = "always"
    status: str = "running"
    startup_order: int = 1
    sample_rate: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    registry_credentials: dict[str, dict[str, str]] = field(default_factory=dict)


def scoring_config(spec: EdgeModuleSpec) -> ScoringConfig:
    return ScoringConfig(
        auth_enabled=True, primary_key_hash=hash_key(spec.key),
        telemetry_path=f"{TELEMETRY_DIR}/{TELEMETRY_FILE}", sample_rate=spec.sample_rate,
    )


def create_options(spec: EdgeModuleSpec) -> dict[str, Any]:
    """The Docker Engine API create body the edge agent passes on (``createOptions``)."""
    port = f"{MODULE_PORT}/tcp"
    on_host = spec.network_mode == "host"
    serve = shlex.join([
        "python", "-m", "airflow_aml.runtime.scoring", "--bundle", BUNDLE_DIR,
        "--host", (spec.host_ip or "0.0.0.0") if on_host else "0.0.0.0",
        "--port", str(spec.host_port if on_host else MODULE_PORT), "--config", "/tmp/scoring.json",
    ])
    host_config: dict[str, Any] = {
        "Binds": [f"{spec.host_folder or DEFAULT_HOST_FOLDER.format(name=spec.name)}:{TELEMETRY_DIR}"],
        "Init": True,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
    }
    options: dict[str, Any] = {
        # The image's CMD serves without a config (no key); the config comes from the twin's env.
        "Cmd": ["sh", "-c", f'printf %s "${ENV_SCORING_CONFIG}" > /tmp/scoring.json && exec {serve}'],
        "HostConfig": host_config,
    }
    if on_host:
        host_config["NetworkMode"] = "host"
    else:
        options["ExposedPorts"] = {port: {}}
        host_config["PortBindings"] = {port: [{"HostIp": spec.host_ip, "HostPort": str(spec.host_port)}]}
    if spec.network_mode not in (None, "host"):
        host_config["NetworkMode"] = spec.network_mode
    return options


def build_manifest(spec: EdgeModuleSpec) -> dict[str, Any]:
    """The deployment manifest of ``spec`` (validated; ValidationError on a bad spec)."""
    env = {ENV_SCORING_CONFIG: scoring_config(spec).model_dump_json(exclude_none=True), **spec.env}
    module = {
        "version": spec.version,
        "type": "docker",
        "status": spec.status,
        "restartPolicy": spec.restart_policy,
        "startupOrder": spec.startup_order,
        "env": {key: {"value": value} for key, value in env.items()},
        "settings": {"image": spec.image, "createOptions": json.dumps(create_options(spec), separators=(",", ":"))},
    }
    runtime_settings: dict[str, Any] = {"minDockerVersion": "v1.25"}
    if spec.registry_credentials:
        runtime_settings["registryCredentials"] = spec.registry_credentials
    manifest = {
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": runtime_settings},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {
                        "image": f"mcr.microsoft.com/azureiotedge-agent:{EDGE_RUNTIME_TAG}", "createOptions": "{}"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {
                        "image": f"mcr.microsoft.com/azureiotedge-hub:{EDGE_RUNTIME_TAG}",
                        "createOptions": json.dumps({"HostConfig": {"PortBindings": {
                            "5671/tcp": [{"HostPort": "5671"}], "8883/tcp": [{"HostPort": "8883"}],
                            "443/tcp": [{"HostPort": "443"}]}}}, separators=(",", ":"))}},
                },
                "modules": {spec.name: module},
            }},
            "$edgeHub": {"properties.desired": {
                "schemaVersion": "1.2",
                "routes": {f"{_route_name(spec.name)}ToUpstream": {
                    "route": f"FROM /messages/modules/{spec.name}/outputs/{TELEMETRY_OUTPUT} INTO $upstream",
                    "priority": 0, "timeToLiveSecs": 86400}},
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
            }},
            spec.name: {"properties.desired": {"scoringPort": MODULE_PORT, "telemetryFile": TELEMETRY_FILE}},
        }
    }
    return validate_manifest(manifest)


def module_of(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][name]
    except KeyError:
        raise ValidationError(f"The manifest has no module {name!r}") from None


def container_config(module: dict[str, Any]) -> dict[str, Any]:
    """The create body the edge agent sends the Docker engine for ``module``: its ``createOptions``
    with the image and the twin's env added (``Env`` as ``NAME=value``)."""
    config = json.loads(module["settings"].get("createOptions") or "{}")
    config["Image"] = module["settings"]["image"]
    env = [f"{name}={item['value']}" for name, item in (module.get("env") or {}).items()]
    config["Env"] = [*config.get("Env", []), *env]
    return config


def _route_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-")) or "module"
