"""The ``aci`` deployment target: one Azure Container Instances container group per deployment.

Calls go through the microsoft-azure provider's ``AzureContainerInstanceHook`` (its
``create_or_update``, ``get_state``, ``delete``, ``get_logs``); the request is built with the SDK's
models (``azure.mgmt.containerinstance.models``) and checked with their own validation before it
is sent. The group runs the image's scoring server with the requested CPU and memory, a public IP
on the scoring port under a DNS label, and readiness/liveness probes on ``/ready``/``/health``.

The scoring config (key hashes only) travels as a *secure* environment value (ARM never returns
it): the container writes it to its config file before the server starts, so a key regeneration
is an update of the group (ACI restarts its container). ACI has no replica sets: one instance per
group, no rolling update (an update restarts the container) and no autoscale; ``validate`` refuses
``replicas`` > 1 and ``autoscale``.
"""

from __future__ import annotations

import importlib
import json
import shlex
from typing import Any

from airflow_aml.deployments.remote.base import CONFIG_FILE, SCORING_PORT, RemoteSpec, RemoteStatus, RemoteTarget
from airflow_aml.deployments.remote.base import scoring_command as server_command
from airflow_aml.deployments.target_settings import AciSettings
from airflow_aml.exceptions import AmlError, ValidationError
from airflow_aml.kubernetes.manifests import dns_name

HOOK_MODULE = "airflow.providers.microsoft.azure.hooks.container_instance"
CONFIG_ENV = "AML_SCORING_CONFIG"
RUNTIME_CONFIG_DIR = "/tmp/aml-config"  # written by the container at start: the image's own files stay read-only
# ACI's limits per container group (Linux, most regions), and its defaults.
MAX_CPU, MAX_MEMORY_GB = 4.0, 16.0
DEFAULT_CPU, DEFAULT_MEMORY_GB = 1.0, 1.5
TAG_WORKSPACE, TAG_DEPLOYMENT = "aml-workspace", "aml-deployment"


def group_name(workspace: str, name: str) -> str:
    return dns_name("aml", workspace, name)


def container_command() -> list[str]:
    """The scoring config from the secure environment value to its file, then the server."""
    server = server_command()
    config_at = server.index("--config") + 1
    server[config_at] = f"{RUNTIME_CONFIG_DIR}/{CONFIG_FILE}"
    script = (f'mkdir -p {RUNTIME_CONFIG_DIR} && printf "%s" "${CONFIG_ENV}" > {server[config_at]} '
              f"&& exec {shlex.join(server)}")
    return ["/bin/sh", "-c", script]


class AciTarget(RemoteTarget):
    kind = "aci"

    def __init__(self, settings: AciSettings, workspace: str) -> None:
        self.settings = settings
        self.workspace = workspace
        self._hook: Any | None = None

    def image_reference(self, location: str) -> str:
        return f"{self.settings.registry_prefix.rstrip('/')}/{location}"

    def hook(self) -> Any:
        if self._hook is None:
            try:
                hook_class = importlib.import_module(HOOK_MODULE).AzureContainerInstanceHook
            except ImportError as exc:
                raise AmlError("The aci deployment target needs apache-airflow-providers-microsoft-azure") from exc
            self._hook = hook_class(azure_conn_id=self.settings.azure_conn_id)
        return self._hook

    def group(self, spec: RemoteSpec) -> Any:
        """The container group of ``spec``, as SDK models."""
        from azure.mgmt.containerinstance import models as aci

        config = spec.config
        name = group_name(spec.workspace, spec.name)
        probe = {"initial_delay_seconds": 2, "period_seconds": 5, "timeout_seconds": 3}
        # The container has the group's name: the hook's get_logs reads the container of that name.
        container = aci.Container(
            name=name, image=spec.image, command=container_command(),
            resources=aci.ResourceRequirements(requests=aci.ResourceRequests(
                cpu=config.cpu_cores or DEFAULT_CPU, memory_in_gb=config.memory_gb or DEFAULT_MEMORY_GB)),
            ports=[aci.ContainerPort(port=SCORING_PORT, protocol="TCP")],
            environment_variables=[aci.EnvironmentVariable(
                name=CONFIG_ENV, secure_value=json.dumps(spec.scoring.model_dump(mode="json"), sort_keys=True))],
            readiness_probe=aci.ContainerProbe(http_get=aci.ContainerHttpGet(path="/ready", port=SCORING_PORT),
                                               **probe),
            liveness_probe=aci.ContainerProbe(http_get=aci.ContainerHttpGet(path="/health", port=SCORING_PORT),
                                              failure_threshold=3, **probe),
        )
        return aci.ContainerGroup(
            location=self.settings.location, containers=[container], os_type="Linux", restart_policy="Always",
            ip_address=aci.IpAddress(type="Public", ports=[aci.Port(protocol="TCP", port=SCORING_PORT)],
                                     dns_name_label=self.settings.dns_name_label or name),
            tags={TAG_WORKSPACE: spec.workspace, TAG_DEPLOYMENT: spec.name, "aml-image": spec.image_id},
        )

    # ------------------------------------------------------------------ RemoteTarget
    def validate(self, spec: RemoteSpec) -> None:
        config = spec.config
        if config.autoscale is not None or config.replicas != 1:
            raise ValidationError("The aci target runs one container group instance: replicas must be 1, no autoscale")
        if (config.cpu_cores or 0) > MAX_CPU or (config.memory_gb or 0) > MAX_MEMORY_GB:
            raise ValidationError(f"The aci target allows at most {MAX_CPU:g} CPU cores and {MAX_MEMORY_GB:g} GB")
        group = self.group(spec)
        problems = sdk_problems(group, "containerGroup")
        if problems:
            raise ValidationError("ACI container group invalid: " + "; ".join(problems))

    def apply(self, spec: RemoteSpec) -> dict[str, Any]:
        name = group_name(spec.workspace, spec.name)
        self.hook().create_or_update(self.settings.resource_group, name, self.group(spec))  # PUT: create or update
        return {"resource_group": self.settings.resource_group, "container_group": name}

    def update_keys(self, spec: RemoteSpec) -> None:
        self.apply(spec)  # the secure value is part of the group: ACI restarts the container with it

    def status(self, name: str) -> RemoteStatus:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            group = self.hook().get_state(self.settings.resource_group, group_name(self.workspace, name))
        except ResourceNotFoundError:
            return RemoteStatus("gone", f"container group {group_name(self.workspace, name)} does not exist")
        return group_status(group)

    def delete(self, name: str) -> None:
        self.hook().delete(self.settings.resource_group, group_name(self.workspace, name))  # 204 when gone already

    def logs(self, name: str, *, tail: int | None = 200) -> str:
        lines = self.hook().get_logs(self.settings.resource_group, group_name(self.workspace, name),
                                     tail=tail or 100_000)
        return "".join(lines)


def sdk_problems(model: Any, path: str) -> list[str]:
    """What the SDK's models declare and ``model`` breaks: required fields unset (their
    ``_validation``), recursively. The SDK's serializer does not check them; ARM would refuse them."""
    problems: list[str] = []
    for attr, rules in (getattr(model, "_validation", None) or {}).items():
        if rules.get("required") and not rules.get("readonly") and getattr(model, attr, None) is None:
            problems.append(f"{path}.{attr} is required")
    for attr in getattr(model, "_attribute_map", {}):
        value = getattr(model, attr, None)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if hasattr(item, "_attribute_map"):
                problems.extend(sdk_problems(item, f"{path}.{attr}" + (f"[{i}]" if isinstance(value, list) else "")))
    return problems


def group_status(group: Any) -> RemoteStatus:
    """Healthy once the group is provisioned and its container runs; failed when ARM says the
    provisioning failed or the container terminated; else still going (with what it is at)."""
    provisioning = str(group.provisioning_state or "Pending")
    container = group.containers[0] if group.containers else None
    view = container.instance_view if container is not None else None
    current = view.current_state if view is not None else None
    events = [f"{e.name}: {e.message}" for e in (view.events if view is not None and view.events else [])]
    state = str(current.state) if current is not None and current.state else "Waiting"
    detail = current.detail_status if current is not None and current.detail_status else ""
    if provisioning == "Failed" or state == "Terminated":
        reason = "; ".join(x for x in (f"provisioning {provisioning}", f"container {state} {detail}".strip(),
                                        *events[-2:]) if x)
        return RemoteStatus("failed", reason)
    if provisioning == "Succeeded" and state == "Running":
        ip = group.ip_address
        host = (ip.fqdn or ip.ip) if ip is not None else None
        uri = f"http://{host}:{SCORING_PORT}/score" if host else None
        return RemoteStatus("healthy", f"container group {group.name} running", scoring_uri=uri, ready=1)
    return RemoteStatus("progressing", f"provisioning {provisioning}, container {state} {detail}".strip())
