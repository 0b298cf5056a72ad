"""The settings of a ``kubernetes`` compute target: :class:`KubernetesComputeConfig`.

::

    ws.register_compute_target("aks", kind="kubernetes", config={
        "namespace": "ml", "image": "registry.example.com/aml-env:3.11",
        "cpu_request": "500m", "memory_limit": "2Gi", "kubernetes_conn_id": "aks_default"})

Checked when the target is registered and again when a run is submitted, before anything is
created (unknown keys, bad quantities, a name that is not a DNS label).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import ValidationError
from airflow_aml.kubernetes.manifests import PodSpecSettings

# Kubernetes resource quantities: '500m', '2', '1.5', '2Gi', '512M', '1e3'.
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[numkKMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "toleration_seconds"}


class KubernetesComputeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "default"
    # The image the run's pod runs: it must hold Python and airflow-aml (the docker builder's
    # environment image pushed to a registry); or the registry prefix it was pushed under.
    image: str | None = None
    registry_prefix: str | None = None
    image_tag: str = "latest"
    image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    image_pull_secrets: list[str] = Field(default_factory=list)
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    service_account: str | None = None
    # An Airflow ``kubernetes`` connection (kubeconfig, in-cluster, context); None: the hook's default.
    kubernetes_conn_id: str | None = None
    # Seconds the pod gets between SIGTERM and SIGKILL when the run is canceled or times out.
    delete_grace_seconds: int = Field(10, ge=0, le=3600)
    # How long a pod may stay Pending (image pull, scheduling) before the run fails.
    pending_timeout_seconds: int = Field(600, ge=1, le=24 * 3600)

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(str(value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity like '500m', '2', '512Mi'")
        return value

    @field_validator("namespace", "service_account")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS-1123 label (lower case, digits, '-')")
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for toleration in value:
            unknown = set(toleration) - _TOLERATION_KEYS
            if unknown:
                raise ValueError(f"toleration keys {sorted(unknown)} unknown; valid: {sorted(_TOLERATION_KEYS)}")
        return value

    @model_validator(mode="after")
    def _image(self) -> KubernetesComputeConfig:
        if (self.image is None) == (self.registry_prefix is None):
            raise ValueError("exactly one of 'image' and 'registry_prefix' is needed")
        return self

    @classmethod
    def parse(cls, config: Mapping[str, Any], *, target: str = "kubernetes") -> KubernetesComputeConfig:
        try:
            return cls.model_validate(dict(config))
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {_reason(err)}" for err in exc.errors()
            )
            raise ValidationError(
                f"Invalid config for kubernetes compute target {target!r}: {problems} "
                f"(known keys: {', '.join(cls.model_fields)})"
            ) from None

    @property
    def pod_image(self) -> str:
        if self.image is not None:
            return self.image
        return f"{str(self.registry_prefix).rstrip('/')}/aml-env:{self.image_tag}"

    def pod_settings(self) -> PodSpecSettings:
        requests = {k: v for k, v in (("cpu", self.cpu_request), ("memory", self.memory_request)) if v}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        return PodSpecSettings(
            namespace=self.namespace,
            image=self.pod_image,
            requests=requests,
            limits=limits,
            node_selector=self.node_selector,
            tolerations=self.tolerations,
            service_account=self.service_account,
            image_pull_secrets=self.image_pull_secrets,
            image_pull_policy=self.image_pull_policy,
        )


def _reason(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")
