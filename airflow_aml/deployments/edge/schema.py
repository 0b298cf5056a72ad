"""Validation of IoT Edge deployment manifests against our own JSON Schema.

The schema (``deployment-manifest.schema.json``, draft 2020-12) is airflow-aml's, written from
Microsoft's documented deployment-manifest format ("Deploy modules and establish routes in IoT
Edge"); it is not SchemaStore's azure-iot-edge-deployment schema. It checks: the required keys
(``modulesContent`` with ``$edgeAgent`` and ``$edgeHub``, their ``properties.desired`` and what
those require), the enums (``schemaVersion``, ``type: docker``, ``status``, ``restartPolicy``,
``imagePullPolicy``), ``createOptions`` being a string of at most 4 KB (the twin's limit per
value) that parses as a JSON object of Docker create options, module names, and routes being
``FROM ... INTO ...`` strings or ``{route, priority 0-9, timeToLiveSecs}`` objects.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from airflow_aml.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).with_name("deployment-manifest.schema.json")
MAX_CREATE_OPTIONS = 4096  # bytes a twin property value may hold


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` unchanged if valid; ValidationError naming the first problems otherwise."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(e.absolute_path))
    problems = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]]
    # What JSON Schema cannot say: createOptions must parse as a JSON object, and its UTF-8 size
    # (not its length in characters) is what the twin limits.
    for where, settings in _settings(manifest):
        options = settings.get("createOptions")
        if not isinstance(options, str):
            continue
        if len(options.encode()) > MAX_CREATE_OPTIONS:
            problems.append(f"{where}: createOptions is {len(options.encode())} bytes, above the twin's 4 KB")
        try:
            parsed = json.loads(options)
        except ValueError as exc:
            problems.append(f"{where}: createOptions is not JSON: {exc}")
            continue
        if not isinstance(parsed, dict):
            problems.append(f"{where}: createOptions must be a JSON object of Docker create options")
    if problems:
        raise ValidationError("Invalid IoT Edge deployment manifest: " + "; ".join(problems))
    return manifest


def _settings(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    try:
        desired = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]
    except (KeyError, TypeError):
        return []
    found = []
    for group in ("systemModules", "modules"):
        for name, module in (desired.get(group) or {}).items():
            if isinstance(module, dict) and isinstance(module.get("settings"), dict):
                found.append((f"{group}/{name}", module["settings"]))
    return found
