"""The Kubernetes objects of a deployment, built with the kubernetes client's models:

* a Secret ``<base>-config`` holding the scoring server's ``scoring.json`` (key hashes only),
  mounted as the replicas' config folder, so that a key regeneration replaces the Secret and the
  scoring server re-reads the file when the kubelet refreshes the volume (no pod restart);
* a Deployment (``replicas``, or ``autoscale.min_replicas`` with an HPA), probes on ``/ready`` and
  ``/health``, requests = limits from ``cpu_cores``/``memory_gb``, and a rolling update with
  ``maxUnavailable: 0``: a new pod must be ready before an old one goes, so the ready count never
  drops during an update;
* a Service (LoadBalancer, port 80 to the pods' scoring port);
* with ``autoscale``, a HorizontalPodAutoscaler (autoscaling/v2) on CPU utilisation.

Every object carries labels that tie it to the workspace and the deployment; the Service and the
Deployment select pods by them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from airflow_aml.deployments.remote.base import CONFIG_DIR, CONFIG_FILE, SCORING_PORT, RemoteSpec, scoring_command
from airflow_aml.deployments.target_settings import KubernetesDeploymentSettings
from airflow_aml.kubernetes.manifests import LABEL_MANAGED_BY, LABEL_WORKSPACE, MANAGED_BY, dns_name, label_value

LABEL_DEPLOYMENT = "aml.airflow.apache.org/deployment"
ANNOTATION_IMAGE = "aml.airflow.apache.org/image-id"
ANNOTATION_GENERATION = "aml.airflow.apache.org/generation"
CONTAINER = "scoring"
# Without a CPU request an HPA on CPU utilisation has nothing to divide by: the default request.
DEFAULT_CPU_REQUEST = "100m"


@dataclass(frozen=True)
class ObjectNames:
    deployment: str
    service: str
    secret: str
    hpa: str


def object_names(workspace: str, name: str) -> ObjectNames:
    # 50 characters leave room for the ReplicaSet's and pods' suffixes within 63.
    base = dns_name("aml", workspace, name, max_length=50)
    return ObjectNames(deployment=base, service=base, secret=f"{base}-config", hpa=base)


def selector_labels(workspace: str, name: str) -> dict[str, str]:
    return {LABEL_WORKSPACE: label_value(workspace), LABEL_DEPLOYMENT: label_value(name)}


def labels(workspace: str, name: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, **selector_labels(workspace, name)}


def label_selector(workspace: str, name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(workspace, name).items()))


def _meta(spec: RemoteSpec, settings: KubernetesDeploymentSettings, name: str) -> Any:
    from kubernetes.client import models as k8s

    return k8s.V1ObjectMeta(name=name, namespace=settings.namespace, labels=labels(spec.workspace, spec.name),
                            annotations={ANNOTATION_IMAGE: spec.image_id, ANNOTATION_GENERATION: str(spec.generation)})


def config_secret(spec: RemoteSpec, settings: KubernetesDeploymentSettings) -> Any:
    from kubernetes.client import models as k8s

    names = object_names(spec.workspace, spec.name)
    return k8s.V1Secret(api_version="v1", kind="Secret", type="Opaque", metadata=_meta(spec, settings, names.secret),
                        string_data={CONFIG_FILE: json.dumps(spec.scoring.model_dump(mode="json"), sort_keys=True)})


def _resources(spec: RemoteSpec) -> Any:
    from kubernetes.client import models as k8s

    config = spec.config
    amounts: dict[str, str] = {"cpu": _cpu(config.cpu_cores) if config.cpu_cores else DEFAULT_CPU_REQUEST}
    if config.memory_gb:
        amounts["memory"] = f"{math.ceil(config.memory_gb * 1024)}Mi"
    limits = {k: v for k, v in amounts.items() if k == "memory" or config.cpu_cores}
    return k8s.V1ResourceRequirements(requests=amounts, limits=limits or None)


def _cpu(cores: float) -> str:
    return f"{math.ceil(cores * 1000)}m"


def deployment(spec: RemoteSpec, settings: KubernetesDeploymentSettings) -> Any:
    from kubernetes.client import models as k8s

    names = object_names(spec.workspace, spec.name)
    config = spec.config
    probe = {"initial_delay_seconds": 2, "period_seconds": 5, "timeout_seconds": 3}
    env = []
    if config.cpu_cores:  # the math libraries would start a thread per node core, above the limit
        threads = str(max(1, math.ceil(config.cpu_cores)))
        env = [k8s.V1EnvVar(name=v, value=threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                              "MKL_NUM_THREADS")]
    container = k8s.V1Container(
        name=CONTAINER, image=spec.image, image_pull_policy=settings.image_pull_policy,
        command=scoring_command()[:1], args=scoring_command()[1:], env=env or None,
        ports=[k8s.V1ContainerPort(name="http", container_port=SCORING_PORT, protocol="TCP")],
        readiness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/ready", port="http"), **probe),
        liveness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"),
                                   failure_threshold=3, **probe),
        resources=_resources(spec),
        volume_mounts=[k8s.V1VolumeMount(name="scoring-config", mount_path=CONFIG_DIR, read_only=True)],
        security_context=k8s.V1SecurityContext(allow_privilege_escalation=False,
                                               capabilities=k8s.V1Capabilities(drop=["ALL"])),
    )
    pod = k8s.V1PodSpec(
        containers=[container],
        volumes=[k8s.V1Volume(name="scoring-config", secret=k8s.V1SecretVolumeSource(secret_name=names.secret))],
        service_account_name=settings.service_account,
        node_selector=dict(settings.node_selector) or None,
        tolerations=[k8s.V1Toleration(**dict(t)) for t in settings.tolerations] or None,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in settings.image_pull_secrets] or None,
        # The scoring server drains in-flight requests on SIGTERM (request_timeout_seconds at most).
        termination_grace_period_seconds=math.ceil(config.request_timeout_seconds) + 5,
    )
    return k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment", metadata=_meta(spec, settings, names.deployment),
        spec=k8s.V1DeploymentSpec(
            replicas=config.initial_replicas,
            selector=k8s.V1LabelSelector(match_labels=selector_labels(spec.workspace, spec.name)),
            strategy=k8s.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k8s.V1RollingUpdateDeployment(max_unavailable=0, max_surge=1)),
            # A rollout not done in this time is reported ProgressDeadlineExceeded (the update fails).
            progress_deadline_seconds=max(60, math.ceil(config.startup_timeout_seconds)),
            revision_history_limit=3,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels(spec.workspace, spec.name),
                                          annotations={ANNOTATION_IMAGE: spec.image_id}),
                spec=pod),
        ),
    )


def service(spec: RemoteSpec, settings: KubernetesDeploymentSettings) -> Any:
    from kubernetes.client import models as k8s

    names = object_names(spec.workspace, spec.name)
    return k8s.V1Service(
        api_version="v1", kind="Service", metadata=_meta(spec, settings, names.service),
        spec=k8s.V1ServiceSpec(
            type="LoadBalancer", selector=selector_labels(spec.workspace, spec.name),
            ports=[k8s.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")]),
    )


def autoscaler(spec: RemoteSpec, settings: KubernetesDeploymentSettings) -> Any | None:
    """The HPA of an autoscaled deployment; None for a fixed replica count."""
    from kubernetes.client import models as k8s

    scale = spec.config.autoscale
    if scale is None:
        return None
    names = object_names(spec.workspace, spec.name)
    return k8s.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler", metadata=_meta(spec, settings, names.hpa),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                               name=names.deployment),
            min_replicas=scale.min_replicas, max_replicas=scale.max_replicas,
            metrics=[k8s.V2MetricSpec(type="Resource", resource=k8s.V2ResourceMetricSource(
                name="cpu", target=k8s.V2MetricTarget(
                    type="Utilization", average_utilization=max(1, round(scale.target_utilization * 100)))))],
            behavior=k8s.V2HorizontalPodAutoscalerBehavior(scale_down=k8s.V2HPAScalingRules(
                stabilization_window_seconds=math.ceil(scale.scale_down_delay_seconds))),
        ),
    )
