"""The kubernetes deployment target's manifests against the Kubernetes 1.32 schema
(kubernetes-validate, strict), a broken one refused, and the state read from recorded Deployment
statuses."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest

from airflow_aml.deployments.config import DeploymentConfig
from airflow_aml.deployments.remote import k8s_manifests
from airflow_aml.deployments.remote.base import RemoteSpec
from airflow_aml.deployments.remote.kubernetes import KubernetesTarget, rollout_status
from airflow_aml.deployments.target_settings import kubernetes_settings
from airflow_aml.exceptions import ValidationError
from airflow_aml.kubernetes.validation import validate_manifest

RECORDINGS = Path(__file__).parents[1] / "recordings" / "kubernetes"
SETTINGS = kubernetes_settings("aks", {"namespace": "ml", "registry_prefix": "registry.example.com",
                                       "node_selector": {"agentpool": "cpu"}, "service_account": "scorer",
                                       "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}]})


def _spec(**config: object) -> RemoteSpec:
    settings = DeploymentConfig.coerce(config)
    return RemoteSpec(workspace="ws", name="iris", image_id="iris:1", image="registry.example.com/aml/iris:1",
                      config=settings, scoring=settings.scoring_config("a" * 64, "b" * 64), generation=1)


def test_every_manifest_is_valid_for_1_32() -> None:
    target = KubernetesTarget(SETTINGS, "ws")
    built = target.manifests(_spec(autoscale={"min_replicas": 2, "max_replicas": 6}, memory_gb=0.5))
    assert [m["kind"] for m in built] == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for manifest in built:
        kubernetes_validate.validate(manifest, "1.32", strict=True)
    deployment = built[1]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2  # autoscale: starts at min_replicas
    assert pod["nodeSelector"] == {"agentpool": "cpu"} and pod["serviceAccountName"] == "scorer"
    assert pod["tolerations"] == [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}]
    # No cpu_cores: the default CPU request the HPA divides by, and no CPU limit.
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                 "limits": {"memory": "512Mi"}}
    assert pod["containers"][0]["args"][-4:] == ["--config", "/var/aml/config/scoring.json", "--log-level", "info"]


def test_a_broken_manifest_is_refused() -> None:
    deployment = k8s_manifests.deployment(_spec(), SETTINGS)
    deployment.spec.strategy.rolling_update.max_unavailable = [0]  # neither an int nor a percentage
    with pytest.raises(ValidationError, match="Deployment manifest invalid for Kubernetes 1.32"):
        validate_manifest(deployment)
    service = validate_manifest(k8s_manifests.service(_spec(), SETTINGS))
    service["spec"]["loadBalancerIPs"] = ["10.0.0.1"]  # no such field: strict validation refuses it
    with pytest.raises(ValidationError, match="Service manifest invalid"):
        validate_manifest(service)


def test_long_names_stay_valid_object_names() -> None:
    spec = RemoteSpec(workspace="a-very-long-workspace-name-for-testing", name="Iris_Scorer.v2-" + "x" * 40,
                      image_id="iris:1", image="r/aml/iris:1", config=DeploymentConfig(),
                      scoring=DeploymentConfig().scoring_config(None, None), generation=1)
    for manifest in KubernetesTarget(SETTINGS, spec.workspace).manifests(spec):
        kubernetes_validate.validate(manifest, "1.32", strict=True)
        assert len(manifest["metadata"]["name"]) <= 57


@pytest.mark.parametrize(("recording", "phase", "reason"), [
    ("deployment_available.json", "healthy", "2 of 2 replica(s) ready"),
    ("deployment_progressing.json", "progressing", "2 of 2 updated, 1 ready"),
    ("deployment_rolling.json", "progressing", "1 of 2 updated, 2 ready"),
    ("deployment_not_observed.json", "progressing", "2 of 2 updated, 2 ready"),  # the controller has not seen gen 3
    ("deployment_deadline_exceeded.json", "failed",
     'ProgressDeadlineExceeded: ReplicaSet "aml-ws-iris-5b8f9c7d6e" has timed out progressing.'),
])
def test_state_from_recorded_deployment_statuses(recording: str, phase: str, reason: str) -> None:
    status = rollout_status(json.loads((RECORDINGS / recording).read_text()))
    assert (status.phase, status.reason) == (phase, reason)
