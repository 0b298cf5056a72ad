"""The settings of the remote deployment targets, checked before anything is created.

* ``kubernetes``: a registered compute target of kind ``kubernetes`` (as Azure ML deploys to an AKS
  compute target), ``Deployment.create(ws, name, image, target="aks")``. Its record is read from the
  store (deployments do not import ``airflow_aml.compute``) and the keys a deployment needs are
  checked here; the run-only keys (``cpu_request``, ``image`` ...) are ignored, the deployment's
  own ``cpu_cores``/``memory_gb`` size its pods.
* ``aci``: ``target="aci"`` with ``config={"aci": {...}}`` (as Azure ML's ACI deployment
  configuration carries the resource group, location and DNS label).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import ValidationError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_dns(value: str | None) -> str | None:
    if value is not None and not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label (lower case, digits, '-')")
    return value


class KubernetesDeploymentSettings(BaseModel):
    """What a deployment reads of a ``kubernetes`` compute target's config."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # the run-only keys are the compute target's

    namespace: str = "default"
    kubernetes_conn_id: str | None = None
    # The registry the docker builder's images are pushed to: the pod pulls <prefix>/<builder's tag>.
    registry_prefix: str = Field(min_length=1)
    image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    image_pull_secrets: list[str] = Field(default_factory=list)
    service_account: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("namespace", "service_account")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        return _check_dns(value)


class AciSettings(BaseModel):
    """Where and how an ``aci`` deployment's container group is made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_group: str = Field(min_length=1, max_length=90)
    location: str = Field(min_length=1, pattern=r"^[a-z0-9]+$")  # "westeurope"
    registry_prefix: str = Field(min_length=1)  # e.g. "myregistry.azurecr.io"
    # An Airflow ``azure_container_instance`` connection (service principal, subscription).
    azure_conn_id: str = "azure_container_instance_default"
    # The group's public name: <dns_name_label>.<location>.azurecontainer.io; None = the group's name.
    dns_name_label: str | None = None

    @field_validator("dns_name_label")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        return _check_dns(value)


def kubernetes_settings(target: str, config: Mapping[str, Any]) -> KubernetesDeploymentSettings:
    try:
        return KubernetesDeploymentSettings.model_validate(dict(config))
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(
            f"Kubernetes compute target {target!r} cannot take deployments: {problems} "
            "(a deployment needs registry_prefix: where its image is pushed)"
        ) from None
