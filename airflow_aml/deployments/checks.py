"""What a deployment's create and update look up and check before they write anything."""

from __future__ import annotations

import hashlib
import socket

from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ActivityRecord, ActivityStatus, ImageRecord, ImageStatus
from airflow_aml.exceptions import ConflictError, NotFoundError
from airflow_aml.images.image import Image
from airflow_aml.references import Reference

_MAX_ATTEMPTS = 100


def keyed_activity(
    workspace: WorkspaceContext, idempotency_key: str | None, kind: str, name: str
) -> tuple[ActivityRecord | None, str | None]:
    """For a keyed operation: (the earlier attempt to follow, None) when one is running or
    succeeded, else (None, the id for a new attempt). Attempt ids are derived from the key, so a
    retried task finds its own; a failed attempt is not followed but retried under the next id."""
    if not idempotency_key:
        return None, None
    for attempt in range(_MAX_ATTEMPTS):
        # The workspace is part of the id: ids are global, keys are per workspace.
        seed = f"{workspace.name}\x1f{idempotency_key}\x1f{kind}\x1f{name}\x1f{attempt}"
        activity_id = hashlib.sha256(seed.encode()).hexdigest()[:32]
        try:
            activity = workspace.store.get_activity(activity_id)
        except NotFoundError:
            return None, activity_id
        if activity.status in (ActivityStatus.FAILED, ActivityStatus.CANCELED):
            continue
        return activity, None
    raise ConflictError(f"Deployment '{name}': {_MAX_ATTEMPTS} attempts of this {kind} failed already")


def resolve_image(workspace: WorkspaceContext, image: Image | str) -> ImageRecord:
    """The ImageRecord of an Image, ``"name:version"`` or ``"name"`` (latest); it must have built."""
    if isinstance(image, str):
        name, version = Reference.parse(image, "image")
    else:
        name, version = image.name, image.version
    record = workspace.store.get_image(workspace.name, name, version)
    if record.status is not ImageStatus.SUCCEEDED:
        raise ConflictError(
            f"Image '{record.id}' is {record.status.value}" + (f" ({record.error})" if record.error else "")
            + "; only a built image can be deployed"
        )
    return record


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
