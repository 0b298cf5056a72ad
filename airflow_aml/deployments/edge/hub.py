"""Applying a manifest through the Azure IoT Hub SDK (``azure-iot-hub``).

One device: ``IoTHubConfigurationManager.apply_configuration_on_edge_device`` (POST
``/devices/{id}/applyConfigurationContent``). A device group: an automatic deployment,
``create_configuration`` with a target condition and priority (PUT ``/configurations/{id}``).
The connection string (``HostName=...;SharedAccessKeyName=...;SharedAccessKey=...``) is read
from a workspace secret at the call and never stored in a record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_aml.exceptions import AmlError, DeploymentError, ValidationError

_CONFIGURATION_ID = re.compile(r"^[a-z0-9-:+%_#*?!(),=@;$']{1,128}$")


@dataclass(frozen=True)
class HubTarget:
    """Where a manifest goes: one edge device, or the devices a target condition selects."""

    device_id: str | None = None
    target_condition: str | None = None
    configuration_id: str | None = None  # the automatic deployment's id (group only)
    priority: int = 10

    def __post_init__(self) -> None:
        if (self.device_id is None) == (self.target_condition is None):
            raise ValidationError("An edge deployment needs exactly one of device_id= or target_condition=")
        if self.target_condition is not None and not _CONFIGURATION_ID.match(self.configuration_id or ""):
            raise ValidationError(
                f"A device-group deployment needs a configuration id of lowercase letters, digits and "
                f"- : + % _ # * ? ! ( ) , = @ ; $ ' (at most 128), got {self.configuration_id!r}")


def apply_manifest(connection_string: str, manifest: dict[str, Any], target: HubTarget) -> dict[str, Any]:
    """Send ``manifest`` to the hub; returns what was done (no secret in it)."""
    from azure.iot.hub import IoTHubConfigurationManager
    from azure.iot.hub.models import Configuration, ConfigurationContent
    from msrest.exceptions import ClientRequestError, HttpOperationError

    content = ConfigurationContent(modules_content=manifest["modulesContent"])
    try:
        manager = IoTHubConfigurationManager.from_connection_string(connection_string)
    except (ValueError, AmlError) as exc:  # the SDK says which part is missing; never echo the string
        raise ValidationError(f"Bad IoT Hub connection string: {type(exc).__name__}") from None
    try:
        if target.device_id is not None:
            manager.apply_configuration_on_edge_device(target.device_id, content)
            return {"device_id": target.device_id}
        configuration = Configuration(
            id=target.configuration_id, schema_version="1.0", content=content,
            target_condition=target.target_condition, priority=target.priority,
            labels={"createdBy": "airflow-aml"},
        )
        created = manager.create_configuration(configuration)
        return {"configuration_id": target.configuration_id, "target_condition": target.target_condition,
                "etag": getattr(created, "etag", None)}
    except (HttpOperationError, ClientRequestError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise DeploymentError(
            f"IoT Hub refused the edge deployment: {f'HTTP {status}' if status else exc}", deployment=target.device_id
            or target.configuration_id) from exc
