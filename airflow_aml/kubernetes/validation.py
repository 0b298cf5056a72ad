"""Manifests checked against a named Kubernetes version's schema (kubernetes-validate).

No API server can be had where this is tested, so the schema is the check that the objects we send
would be accepted: every manifest is validated before a call sends it.
"""

from __future__ import annotations

from typing import Any

from airflow_aml.exceptions import ValidationError

# The Kubernetes version whose schema manifests are checked against (one kubernetes-validate ships).
KUBERNETES_VERSION = "1.32"


def to_manifest(obj: Any) -> dict[str, Any]:
    """A kubernetes client model (or a dict) as the JSON the API server receives."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def validate_manifest(obj: Any, *, version: str = KUBERNETES_VERSION) -> dict[str, Any]:
    """The manifest of ``obj``, validated strictly (unknown fields refused); ValidationError if not."""
    import kubernetes_validate

    manifest = to_manifest(obj)
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        kind = manifest.get("kind", "?") if isinstance(manifest, dict) else "?"
        path = "/".join(str(p) for p in getattr(exc, "path", []) or [])
        raise ValidationError(
            f"Kubernetes {kind} manifest invalid for Kubernetes {version} at {path or '.'}: {exc.message}"
        ) from None
    return manifest
