"""The ``kubernetes`` deployment target: the cluster runs and supervises the replicas.

Calls go through the cncf-kubernetes provider's ``KubernetesHook`` (its ``api_client``: the
connection's kubeconfig, in-cluster config or context), to core/v1, apps/v1 and autoscaling/v2.
Every manifest is validated against the Kubernetes schema before it is sent. Objects are created
or replaced: a 409 on create reads the object and replaces it with its ``resourceVersion`` (a
Service refuses an update without one), so a retried create or update converges instead of
failing; a 404 on delete is what was wanted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from airflow_aml.deployments.remote import k8s_manifests as manifests
from airflow_aml.deployments.remote.base import RemoteSpec, RemoteStatus, RemoteTarget
from airflow_aml.deployments.target_settings import KubernetesDeploymentSettings
from airflow_aml.exceptions import AmlError
from airflow_aml.kubernetes.client import FATAL_WAITING_REASONS
from airflow_aml.kubernetes.validation import validate_manifest

HOOK_MODULE = "airflow.providers.cncf.kubernetes.hooks.kubernetes"


def _status_of(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


class KubernetesTarget(RemoteTarget):
    kind = "kubernetes"

    def __init__(self, settings: KubernetesDeploymentSettings, workspace: str) -> None:
        self.settings = settings
        self.workspace = workspace
        self.namespace = settings.namespace
        self._apis: tuple[Any, Any, Any] | None = None

    def image_reference(self, location: str) -> str:
        return f"{self.settings.registry_prefix.rstrip('/')}/{location}"

    # ------------------------------------------------------------------ clients
    def apis(self) -> tuple[Any, Any, Any]:
        """(core/v1, apps/v1, autoscaling/v2), made from the hook's ApiClient on first use."""
        if self._apis is None:
            try:
                hook_class = importlib.import_module(HOOK_MODULE).KubernetesHook
            except ImportError as exc:
                raise AmlError("The kubernetes deployment target needs apache-airflow-providers-cncf-kubernetes") \
                    from exc
            from kubernetes import client

            conn_id = self.settings.kubernetes_conn_id
            api_client = (hook_class(conn_id=conn_id) if conn_id else hook_class()).api_client
            self._apis = (client.CoreV1Api(api_client), client.AppsV1Api(api_client),
                          client.AutoscalingV2Api(api_client))
        return self._apis

    # ------------------------------------------------------------------ RemoteTarget
    def manifests(self, spec: RemoteSpec) -> list[dict[str, Any]]:
        """Secret, Deployment, Service and (autoscale) HPA, each validated; in the order applied."""
        built = [manifests.config_secret(spec, self.settings), manifests.deployment(spec, self.settings),
                 manifests.service(spec, self.settings), manifests.autoscaler(spec, self.settings)]
        return [validate_manifest(obj) for obj in built if obj is not None]

    def validate(self, spec: RemoteSpec) -> None:
        self.manifests(spec)

    def apply(self, spec: RemoteSpec) -> dict[str, Any]:
        core, apps, autoscaling = self.apis()
        secret, deployment, service, *hpa = self.manifests(spec)
        self._create_or_replace(core, "secret", secret)  # first: the pods mount it
        self._create_or_replace(apps, "deployment", deployment, keep_replicas=bool(hpa))
        self._create_or_replace(core, "service", service)
        names = manifests.object_names(spec.workspace, spec.name)
        if hpa:
            self._create_or_replace(autoscaling, "horizontal_pod_autoscaler", hpa[0])
        else:  # replicas again after autoscale: the HPA would go on resizing the Deployment
            self._delete(autoscaling.delete_namespaced_horizontal_pod_autoscaler, names.hpa)
        return {"namespace": self.namespace, "deployment": names.deployment, "service": names.service,
                "secret": names.secret, "hpa": names.hpa if hpa else None}

    def update_keys(self, spec: RemoteSpec) -> None:
        core, _, _ = self.apis()
        self._create_or_replace(core, "secret", validate_manifest(manifests.config_secret(spec, self.settings)))

    def status(self, name: str) -> RemoteStatus:
        core, apps, _ = self.apis()
        names = manifests.object_names(self.workspace, name)
        try:
            found = apps.read_namespaced_deployment_status(names.deployment, self.namespace)
        except Exception as exc:
            if _status_of(exc) == 404:
                return RemoteStatus("gone", f"Deployment {self.namespace}/{names.deployment} does not exist")
            raise
        doc = apps.api_client.sanitize_for_serialization(found)
        status = rollout_status(doc)
        if status.phase == "progressing":
            reason = self._fatal_pod_reason(core, name)
            if reason:
                return RemoteStatus("failed", reason, ready=status.ready)
        if status.phase == "healthy":
            return RemoteStatus("healthy", status.reason, scoring_uri=self._scoring_uri(core, names.service),
                                ready=status.ready)
        return status

    def delete(self, name: str) -> None:
        core, apps, autoscaling = self.apis()
        names = manifests.object_names(self.workspace, name)
        self._delete(autoscaling.delete_namespaced_horizontal_pod_autoscaler, names.hpa)
        self._delete(core.delete_namespaced_service, names.service)
        self._delete(apps.delete_namespaced_deployment, names.deployment, propagation_policy="Foreground")
        self._delete(core.delete_namespaced_secret, names.secret)

    def logs(self, name: str, *, tail: int | None = 200) -> str:
        core, _, _ = self.apis()
        pods = core.list_namespaced_pod(self.namespace, label_selector=manifests.label_selector(self.workspace, name))
        parts = []
        for pod in pods.items:
            kwargs: dict[str, Any] = {"container": manifests.CONTAINER}
            if tail is not None:
                kwargs["tail_lines"] = tail
            try:
                text = core.read_namespaced_pod_log(pod.metadata.name, self.namespace, **kwargs)
            except Exception as exc:  # a pod still pulling its image has no log yet
                text = f"(no log: {getattr(exc, 'reason', exc)})"
            parts.append(f"==> pod {pod.metadata.name} <==\n{text}")
        return "\n".join(parts) or f"(no pods of deployment '{name}' in namespace {self.namespace})"

    # ------------------------------------------------------------------ helpers
    def _create_or_replace(self, api: Any, kind: str, body: dict[str, Any], *, keep_replicas: bool = False) -> None:
        try:
            getattr(api, f"create_namespaced_{kind}")(self.namespace, body)
            return
        except Exception as exc:
            if _status_of(exc) != 409:
                raise
        name = body["metadata"]["name"]
        current = api.api_client.sanitize_for_serialization(
            getattr(api, f"read_namespaced_{kind}")(name, self.namespace))
        body = {**body, "metadata": {**body["metadata"],
                                     "resourceVersion": current["metadata"].get("resourceVersion")}}
        if keep_replicas and "replicas" in (current.get("spec") or {}):
            # The HPA owns the count of an autoscaled Deployment: an update must not reset it.
            body["spec"] = {**body["spec"], "replicas": current["spec"]["replicas"]}
        if kind == "service" and (current.get("spec") or {}).get("clusterIP"):
            body["spec"] = {**body["spec"], "clusterIP": current["spec"]["clusterIP"]}  # immutable
        getattr(api, f"replace_namespaced_{kind}")(name, self.namespace, body)

    def _delete(self, call: Callable[..., Any], name: str, **kwargs: Any) -> None:
        try:
            call(name, self.namespace, **kwargs)
        except Exception as exc:
            if _status_of(exc) != 404:  # gone already: what was wanted
                raise

    def _fatal_pod_reason(self, core: Any, name: str) -> str | None:
        pods = core.list_namespaced_pod(self.namespace, label_selector=manifests.label_selector(self.workspace, name))
        for pod in core.api_client.sanitize_for_serialization(pods).get("items") or []:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in FATAL_WAITING_REASONS:
                    return f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(
                        ": ")
        return None

    def _scoring_uri(self, core: Any, service: str) -> str:
        """The LoadBalancer's address once the cloud gave one, else the in-cluster name."""
        found = core.api_client.sanitize_for_serialization(core.read_namespaced_service(service, self.namespace))
        for ingress in ((found.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            host = ingress.get("hostname") or ingress.get("ip")
            if host:
                return f"http://{host}/score"
        return f"http://{service}.{self.namespace}.svc.cluster.local/score"


def rollout_status(doc: dict[str, Any]) -> RemoteStatus:
    """A Deployment's rollout as ``kubectl rollout status`` judges it: failed once its Progressing
    condition says ProgressDeadlineExceeded (or a ReplicaFailure), done once the controller saw the
    newest spec and every replica is updated and available (no old pod left)."""
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = int(status.get("readyReplicas") or 0)
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return RemoteStatus("failed", f"ProgressDeadlineExceeded: {progressing.get('message', '')}".rstrip(": "),
                            ready=ready)
    failure = conditions.get("ReplicaFailure") or {}
    if failure.get("status") == "True":
        return RemoteStatus("failed", f"{failure.get('reason', 'ReplicaFailure')}: {failure.get('message', '')}",
                            ready=ready)
    wanted = int(spec.get("replicas", 1))
    generation = int((doc.get("metadata") or {}).get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    seen = int(status.get("observedGeneration") or 0) >= generation
    if seen and updated == wanted and int(status.get("replicas") or 0) == updated \
            and int(status.get("availableReplicas") or 0) == updated:
        return RemoteStatus("healthy", f"{ready} of {wanted} replica(s) ready", ready=ready)
    return RemoteStatus("progressing", f"{updated} of {wanted} updated, {ready} ready", ready=ready)
