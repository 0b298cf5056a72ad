"""The kubernetes compute target's manifests (Pod, Secret), validated strictly against the
Kubernetes 1.32 schema that kubernetes-validate ships, and its config checks."""

from __future__ import annotations

import pytest

from airflow_aml.compute import check_compute_config
from airflow_aml.compute.kubernetes.config import KubernetesComputeConfig
from airflow_aml.exceptions import ValidationError
from airflow_aml.kubernetes.manifests import (
    LABEL_RUN,
    LABEL_WORKSPACE,
    dns_name,
    label_value,
    run_pod,
    run_secret,
    run_selector,
)
from airflow_aml.kubernetes.validation import KUBERNETES_VERSION, validate_manifest

CONFIG = {
    "namespace": "ml",
    "image": "registry.example.com/aml-env:3.11",
    "cpu_request": "500m",
    "cpu_limit": "2",
    "memory_request": "512Mi",
    "memory_limit": "2Gi",
    "node_selector": {"agentpool": "gpu"},
    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    "service_account": "aml-runner",
    "image_pull_secrets": ["acr-pull"],
    "kubernetes_conn_id": "aks_default",
}


def _pod(run_id: str = "run-k8s-0001", workspace: str = "ws") -> dict:
    settings = KubernetesComputeConfig.parse(CONFIG).pod_settings()
    pod = run_pod(
        settings,
        workspace=workspace,
        run_id=run_id,
        command=["python", "-m", "x", "train.py"],
        environment={"AML_RUN_ID": run_id, "AML_STORE_URI": "http://127.0.0.1:8080"},
        secret_name=dns_name("aml-run", run_id, "token"),
        secret_env="AML_RUN_TOKEN",
    )
    return validate_manifest(pod)


def test_pod_manifest_is_valid_and_carries_the_settings() -> None:
    assert KUBERNETES_VERSION == "1.32"
    manifest = _pod()
    spec = manifest["spec"]
    container = spec["containers"][0]
    assert manifest["metadata"]["name"] == "aml-run-run-k8s-0001"
    assert manifest["metadata"]["labels"][LABEL_RUN] == "run-k8s-0001"
    assert manifest["metadata"]["labels"][LABEL_WORKSPACE] == "ws"
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"agentpool": "gpu"}
    assert spec["tolerations"][0] == {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    assert spec["serviceAccountName"] == "aml-runner"
    assert spec["imagePullSecrets"] == [{"name": "acr-pull"}]
    assert container["name"] == "base"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert container["command"] == ["python"] and container["args"] == ["-m", "x", "train.py"]


def test_run_token_is_a_secret_reference_never_a_value() -> None:
    manifest = _pod()
    env = {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}
    assert env["AML_RUN_TOKEN"] == {
        "name": "AML_RUN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "aml-run-run-k8s-0001-token", "key": "run-token"}},
    }
    assert "value" not in env["AML_RUN_TOKEN"]
    assert env["AML_STORE_URI"]["value"].startswith("http://")  # the service, never a database URI


def test_secret_manifest_is_valid() -> None:
    settings = KubernetesComputeConfig.parse(CONFIG).pod_settings()
    manifest = validate_manifest(run_secret(settings, workspace="ws", run_id="run-k8s-0001", run_token="tok"))
    assert manifest["kind"] == "Secret" and manifest["type"] == "Opaque"
    assert manifest["stringData"] == {"run-token": "tok"}
    assert manifest["metadata"]["labels"][LABEL_RUN] == "run-k8s-0001"


def test_long_and_odd_names_become_valid_labels_and_dns_names() -> None:
    run_id = "Run_" + "x" * 80 + "/odd"
    manifest = _pod(run_id=run_id, workspace="My Workspace")
    assert len(manifest["metadata"]["name"]) <= 63
    assert manifest["metadata"]["annotations"]["aml.airflow.apache.org/run-id"] == run_id
    assert label_value(run_id) != label_value(run_id + "y")  # a hash keeps shortened values apart
    assert run_selector("ws", "run-1") != run_selector("ws", "run-2")


@pytest.mark.parametrize("breakage", ["restart_policy", "unknown_field", "container_name"])
def test_a_broken_manifest_fails_validation(breakage: str) -> None:
    manifest = _pod()
    if breakage == "restart_policy":
        manifest["spec"]["restartPolicy"] = 3  # an integer where the schema wants a string
    elif breakage == "unknown_field":
        manifest["spec"]["containers"][0]["gpus"] = 1  # strict: unknown fields refused
    else:
        del manifest["spec"]["containers"][0]["name"]  # required
    with pytest.raises(ValidationError, match="Kubernetes Pod manifest invalid for Kubernetes 1.32"):
        validate_manifest(manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cpu_limit": "two"}, "cpu_limit"),
        ({"namespace": "ML_Space"}, "namespace"),
        ({"gpus": 1}, "gpus: unknown key"),
        ({"image": None}, "exactly one of 'image' and 'registry_prefix'"),
        ({"registry_prefix": "acr.example.com/ml"}, "exactly one of"),
        ({"tolerations": [{"kind": "x"}]}, "toleration keys"),
    ],
)
def test_bad_config_is_refused_at_registration(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_compute_config("kubernetes", {**CONFIG, **change})


def test_registry_prefix_names_the_environment_image() -> None:
    config = {**CONFIG, "image": None, "registry_prefix": "acr.example.com/ml/", "image_tag": "abc123"}
    assert KubernetesComputeConfig.parse(config).pod_image == "acr.example.com/ml/aml-env:abc123"
