"""Pod and Secret manifests of a run, built with the kubernetes client's models as the
cncf-kubernetes provider builds ``KubernetesPodOperator`` pods (``V1Pod`` with one ``base``
container, ``restartPolicy: Never``, labels, node selector, tolerations, service account).

Labels tie every object to the workspace and the run, so that a retried Airflow task finds the
run's pod by label selector instead of creating a second one. The run token never appears in a
manifest: the pod reads it from the run's Secret (``secretKeyRef``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LABEL_WORKSPACE = "aml.airflow.apache.org/workspace"
LABEL_RUN = "aml.airflow.apache.org/run-id"
LABEL_COMPONENT = "aml.airflow.apache.org/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-aml"
ANNOTATION_RUN = "aml.airflow.apache.org/run-id"  # the full id, a label value is limited to 63 chars
SECRET_TOKEN_KEY = "run-token"
CONTAINER_NAME = "base"  # the provider's name for the main container of a pod it builds

_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]")
_NOT_DNS = re.compile(r"[^a-z0-9-]")


def label_value(value: str) -> str:
    """``value`` as a valid label value (<= 63 chars, alphanumeric at both ends); a long or
    rewritten value keeps a hash suffix so that two runs never share one."""
    clean = _NOT_LABEL.sub("-", value).strip("-_.")
    if clean == value and len(value) <= 63:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{clean[:50].strip('-_.')}-{digest}"


def dns_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1123 label made of ``parts`` (pod and secret names), with a hash when shortened."""
    raw = "-".join(parts)
    clean = _NOT_DNS.sub("-", raw.lower()).strip("-")
    if clean == raw and len(clean) <= max_length:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{clean[: max_length - 11].strip('-')}-{digest}"


def run_labels(workspace: str, run_id: str) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_WORKSPACE: label_value(workspace),
        LABEL_RUN: label_value(run_id),
        LABEL_COMPONENT: "run",
    }


def run_selector(workspace: str, run_id: str) -> str:
    """The label selector that finds the run's objects (its pod, its Secret)."""
    return ",".join(f"{k}={v}" for k, v in sorted(run_labels(workspace, run_id).items()))


@dataclass(frozen=True)
class PodSpecSettings:
    """What a target's config puts in the pod besides the command and the environment."""

    namespace: str
    image: str
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    service_account: str | None = None
    image_pull_secrets: Sequence[str] = ()
    image_pull_policy: str = "IfNotPresent"


def run_secret(settings: PodSpecSettings, *, workspace: str, run_id: str, run_token: str) -> Any:
    """The run's Secret holding its run token (deleted with the pod)."""
    from kubernetes.client import models as k8s

    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=k8s.V1ObjectMeta(
            name=dns_name("aml-run", run_id, "token"),
            namespace=settings.namespace,
            labels=run_labels(workspace, run_id),
            annotations={ANNOTATION_RUN: run_id},
        ),
        string_data={SECRET_TOKEN_KEY: run_token},
    )


def run_pod(
    settings: PodSpecSettings,
    *,
    workspace: str,
    run_id: str,
    command: Sequence[str],
    environment: Mapping[str, str],
    secret_name: str | None,
    secret_env: str | Sequence[str],
) -> Any:
    """The run's Pod: one container running ``command``; the ``secret_env`` variables (every one that
    carries the run token) read from ``secret_name``, never written into the manifest."""
    from kubernetes.client import models as k8s

    env = [k8s.V1EnvVar(name=name, value=value) for name, value in sorted(environment.items())]
    names = [secret_env] if isinstance(secret_env, str) else list(secret_env)
    if secret_name is not None:
        ref = k8s.V1SecretKeySelector(name=secret_name, key=SECRET_TOKEN_KEY)
        env.extend(k8s.V1EnvVar(name=n, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)) for n in names)
    resources = None
    if settings.requests or settings.limits:
        resources = k8s.V1ResourceRequirements(
            requests=dict(settings.requests) or None, limits=dict(settings.limits) or None
        )
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        command=list(command[:1]),
        args=list(command[1:]),
        env=env,
        resources=resources,
    )
    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(
            name=dns_name("aml-run", run_id),
            namespace=settings.namespace,
            labels=run_labels(workspace, run_id),
            annotations={ANNOTATION_RUN: run_id},
        ),
        spec=k8s.V1PodSpec(
            containers=[container],
            restart_policy="Never",  # a run is one attempt; retries are Airflow's
            node_selector=dict(settings.node_selector) or None,
            tolerations=[k8s.V1Toleration(**dict(t)) for t in settings.tolerations] or None,
            service_account_name=settings.service_account,
            image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in settings.image_pull_secrets] or None,
        ),
    )
