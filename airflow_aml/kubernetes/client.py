"""The Kubernetes calls of the run (and deployment) targets, through the cncf-kubernetes
provider's ``KubernetesHook`` (its ``core_v1_client``): the connection (kubeconfig, in-cluster,
context, namespace) is Airflow's, never a hand-made HTTP client.

Every manifest is validated (:mod:`.validation`) before it is sent. A 404 on delete and a 409 on
create of the run's Secret (a retried task creating it again) are expected and not errors.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from airflow_aml.exceptions import AmlError
from airflow_aml.kubernetes.validation import validate_manifest

log = logging.getLogger(__name__)

# Imported by name, as the docker target imports DockerHook: the SDK must import (and the import
# contract "works without Airflow" hold) without Airflow; only a kubernetes target needs it.
HOOK_MODULE = "airflow.providers.cncf.kubernetes.hooks.kubernetes"


class KubernetesClient:
    """The core/v1 calls made for a run, in one namespace."""

    def __init__(self, conn_id: str | None, namespace: str, *, api: Any | None = None) -> None:
        self.namespace = namespace
        if api is None:
            try:
                hook_class = importlib.import_module(HOOK_MODULE).KubernetesHook
            except ImportError as exc:
                raise AmlError("The kubernetes targets need apache-airflow-providers-cncf-kubernetes") from exc
            api = (hook_class(conn_id=conn_id) if conn_id else hook_class()).core_v1_client
        self.api = api

    def create_secret(self, secret: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        body = validate_manifest(secret)
        try:
            self.api.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # already there: created by an earlier attempt of the run
                raise
            self.api.replace_namespaced_secret(body["metadata"]["name"], self.namespace, body)

    def create_pod(self, pod: Any) -> dict[str, Any]:
        body = validate_manifest(pod)
        return self.api.api_client.sanitize_for_serialization(self.api.create_namespaced_pod(self.namespace, body))

    def read_pod(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.api.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.api.api_client.sanitize_for_serialization(pod)

    def find_pods(self, selector: str) -> list[dict[str, Any]]:
        found = self.api.list_namespaced_pod(self.namespace, label_selector=selector)
        return [self.api.api_client.sanitize_for_serialization(p) for p in found.items]

    def follow_logs(self, name: str, *, since_seconds: int | None = None) -> Iterator[str]:
        """The container's output, line by line, until it ends (``follow=true``)."""
        kwargs: dict[str, Any] = {"container": "base", "follow": True, "_preload_content": False}
        if since_seconds is not None:
            kwargs["since_seconds"] = max(1, since_seconds)
        response = self.api.read_namespaced_pod_log(name, self.namespace, **kwargs)
        pending = b""
        try:
            for chunk in response.stream(amt=64 * 1024, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    def delete_pod(self, name: str, *, grace_period_seconds: int | None = None) -> bool:
        return self._delete(self.api.delete_namespaced_pod, name, grace_period_seconds)

    def delete_secret(self, name: str) -> bool:
        return self._delete(self.api.delete_namespaced_secret, name, None)

    def _delete(self, call: Callable[..., Any], name: str, grace: int | None) -> bool:
        from kubernetes.client.exceptions import ApiException

        kwargs = {} if grace is None else {"grace_period_seconds": grace}
        try:
            call(name, self.namespace, **kwargs)
        except ApiException as exc:
            if exc.status == 404:  # gone already
                return False
            raise
        return True


def pod_phase(pod: dict[str, Any] | None) -> str:
    """``Pending``/``Running``/``Succeeded``/``Failed``/``Unknown``; ``Gone`` for no pod."""
    if pod is None:
        return "Gone"
    return str((pod.get("status") or {}).get("phase") or "Pending")


def exit_code(pod: dict[str, Any]) -> int | None:
    """The main container's exit code once it terminated, else None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "base":
            terminated = (status.get("state") or {}).get("terminated")
            if terminated is not None:
                return int(terminated.get("exitCode", -1))
    return None


def waiting_reason(pod: dict[str, Any]) -> str | None:
    """Why the main container cannot start (``ImagePullBackOff``, ``CreateContainerConfigError``)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") in FATAL_WAITING_REASONS:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    return None


# A container waiting for one of these never starts by itself: the run fails instead of hanging.
FATAL_WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)
