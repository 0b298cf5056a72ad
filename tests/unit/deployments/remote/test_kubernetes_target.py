"""The kubernetes deployment target against a recorded API server on 127.0.0.1: the real
kubernetes client through the provider's ``KubernetesHook`` (an ``AIRFLOW_CONN_...`` kubeconfig),
the exact call sequences of create, update with a new image, scale (replicas, autoscale -> HPA),
key regeneration, delete; state from recorded Deployment statuses; every body sent validated
again against the 1.32 schema, strictly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import ActivityStatus, DeploymentState
from airflow_aml.exceptions import DeploymentError, DeploymentNotFoundError, ValidationError
from airflow_aml.runtime.scoring.auth import hash_key
from airflow_aml.workspace import Workspace
from tests.unit.compute.k8s_recorded import connection_env
from tests.unit.deployments.k8s_recorded import APPS, CORE, HPA, NAME, Scenario, recorded_kubernetes

CONN_ID = "k8s_deploy_recorded"
SECRET, SERVICE = f"{CORE}/secrets/{NAME}-config", f"{CORE}/services/{NAME}"
DEPLOYMENT, AUTOSCALER = f"{APPS}/deployments/{NAME}", f"{HPA}/horizontalpodautoscalers/{NAME}"
APPLY_NEW = [f"POST {CORE}/secrets", f"POST {APPS}/deployments", f"POST {CORE}/services", f"DELETE {AUTOSCALER}"]
APPLY_AGAIN = [  # each object there already: 409, read (resourceVersion), replace
    f"POST {CORE}/secrets", f"GET {SECRET}", f"PUT {SECRET}",
    f"POST {APPS}/deployments", f"GET {DEPLOYMENT}", f"PUT {DEPLOYMENT}",
    f"POST {CORE}/services", f"GET {SERVICE}", f"PUT {SERVICE}",
]
ROLLING = [f"GET {DEPLOYMENT}/status", f"GET {CORE}/pods"]  # not done yet: look for pods that cannot start
DONE = [f"GET {DEPLOYMENT}/status", f"GET {SERVICE}"]  # done: the LoadBalancer's address


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def ws(remote_ws: Workspace, scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    with recorded_kubernetes(scenario) as url:
        for name, value in connection_env(CONN_ID, url).items():
            monkeypatch.setenv(name, value)
        remote_ws.register_compute_target("aks", kind="kubernetes", config={
            "namespace": "ml", "registry_prefix": "registry.example.com/", "kubernetes_conn_id": CONN_ID,
            "image_pull_secrets": ["acr-pull"], "cpu_request": "250m"})  # a run-only key: ignored here
        yield remote_ws


def _create(ws: Workspace, scenario: Scenario, **config: Any) -> Deployment:
    service = Deployment.create(ws, "iris", "iris:1", target="aks", config=config or {"replicas": 2}, timeout=10)
    scenario.requests.clear()
    scenario.status_reads = 0
    return service


def _validated(bodies: list[Any]) -> list[Any]:
    for body in bodies:
        kubernetes_validate.validate(body, "1.32", strict=True)
    return bodies


def test_create_applies_secret_deployment_service_and_follows_the_rollout(ws: Workspace, scenario: Scenario) -> None:
    service = Deployment.create(ws, "iris", "iris:1", target="aks",
                                config={"replicas": 2, "cpu_cores": 0.5, "memory_gb": 1}, timeout=10)
    assert scenario.calls() == [*APPLY_NEW, *ROLLING, *DONE]
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "iris:1"
    assert service.scoring_uri == "http://20.31.7.144/score"  # the recorded Service's LoadBalancer ingress
    assert service.activity.status is ActivityStatus.SUCCEEDED

    (secret,) = _validated(scenario.sent("POST", f"{CORE}/secrets"))
    (deployment,) = _validated(scenario.sent("POST", f"{APPS}/deployments"))
    (svc,) = _validated(scenario.sent("POST", f"{CORE}/services"))
    scoring = json.loads(secret["stringData"]["scoring.json"])
    primary, secondary = service.get_keys()
    assert scoring["primary_key_hash"] == hash_key(primary) and scoring["secondary_key_hash"] == hash_key(secondary)
    assert primary not in json.dumps(scenario.sent("POST", f"{CORE}/secrets"))  # hashes only

    labels = {"aml.airflow.apache.org/workspace": "ws", "aml.airflow.apache.org/deployment": "iris"}
    for body in (secret, deployment, svc):
        assert labels.items() <= body["metadata"]["labels"].items()
    spec = deployment["spec"]
    assert spec["replicas"] == 2 and spec["selector"]["matchLabels"] == labels == svc["spec"]["selector"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/aml/iris:1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1024Mi"},
                                      "limits": {"cpu": "500m", "memory": "1024Mi"}}
    assert container["volumeMounts"][0]["mountPath"] == "/var/aml/config"
    assert spec["template"]["spec"]["volumes"][0]["secret"]["secretName"] == f"{NAME}-config"
    assert spec["template"]["spec"]["imagePullSecrets"] == [{"name": "acr-pull"}]
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["targetPort"] == "http"


def test_update_with_a_new_image_replaces_each_object(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    scenario.deployment_states = ["deployment_rolling.json", "deployment_available.json"]
    service.update(image="iris:2", timeout=10)
    assert scenario.calls() == [*APPLY_AGAIN, f"DELETE {AUTOSCALER}", *ROLLING, *DONE]
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "iris:2"
    put = _validated(scenario.sent("PUT", DEPLOYMENT))[0]
    assert put["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/aml/iris:2"
    assert put["metadata"]["resourceVersion"]  # read from the object it replaces
    assert _validated(scenario.sent("PUT", SERVICE))[0]["spec"]["clusterIP"] == "10.0.118.42"  # immutable, kept


def test_scale_to_autoscale_adds_an_hpa_and_back_removes_it(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    service.update(config={"replicas": 1, "autoscale": {"min_replicas": 1, "max_replicas": 5,
                                                        "target_utilization": 0.6}}, timeout=10)
    assert scenario.calls() == [*APPLY_AGAIN, f"POST {HPA}/horizontalpodautoscalers", *ROLLING, *DONE]
    (hpa,) = _validated(scenario.sent("POST", f"{HPA}/horizontalpodautoscalers"))
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    # The HPA owns the count: the update kept the Deployment's current 2 replicas, not min_replicas.
    assert scenario.sent("PUT", DEPLOYMENT)[0]["spec"]["replicas"] == 2

    scenario.requests.clear()
    scenario.deployment_states = ["deployment_available.json"]
    service.update(config={"autoscale": None, "replicas": 3}, timeout=10)
    assert scenario.calls() == [*APPLY_AGAIN, f"DELETE {AUTOSCALER}", *DONE]
    assert scenario.sent("PUT", DEPLOYMENT)[0]["spec"]["replicas"] == 3
    assert AUTOSCALER not in scenario.objects


def test_regenerate_key_replaces_only_the_secret(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    key = service.regenerate_key("secondary")
    assert scenario.calls() == [f"POST {CORE}/secrets", f"GET {SECRET}", f"PUT {SECRET}"]
    scoring = json.loads(_validated(scenario.sent("PUT", SECRET))[0]["stringData"]["scoring.json"])
    assert scoring["secondary_key_hash"] == hash_key(key) == service.record.secondary_key_hash
    assert scoring["primary_key_hash"] == hash_key(service.get_keys()[0])


def test_delete_removes_every_object_and_the_record(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario, autoscale={"min_replicas": 2, "max_replicas": 4})
    assert AUTOSCALER in scenario.objects
    service.delete(timeout=10)
    assert scenario.calls() == [f"DELETE {AUTOSCALER}", f"DELETE {SERVICE}", f"DELETE {DEPLOYMENT}",
                                f"DELETE {SECRET}", f"GET {DEPLOYMENT}/status"]  # the last: 404, gone
    assert scenario.requests[2].query["propagationPolicy"] == ["Foreground"]  # its pods go before it
    assert not scenario.objects
    with pytest.raises(DeploymentNotFoundError):
        Deployment.get(ws, "iris")
    service.delete()  # idempotent: nothing left to call
    assert len(scenario.requests) == 5


def test_delete_tolerates_objects_already_gone(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    scenario.objects.clear()  # removed by hand meanwhile: every DELETE answers the recorded 404
    service.delete(timeout=10)
    with pytest.raises(DeploymentNotFoundError):
        Deployment.get(ws, "iris")


def test_a_rollout_past_its_deadline_fails_the_create(ws: Workspace, scenario: Scenario) -> None:
    scenario.deployment_states = ["deployment_progressing.json", "deployment_deadline_exceeded.json"]
    with pytest.raises(DeploymentError, match="ProgressDeadlineExceeded"):
        Deployment.create(ws, "iris", "iris:1", target="aks", timeout=10)
    record = Deployment.get(ws, "iris")
    assert record.state is DeploymentState.FAILED and "timed out progressing" in (record.error or "")
    assert record.activity.status is ActivityStatus.FAILED


def test_an_update_whose_pods_cannot_pull_rolls_back(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    scenario.deployment_states = ["deployment_rolling.json"]
    scenario.pods = "pod_list_image_pull_backoff.json"
    with pytest.raises(DeploymentError, match="ImagePullBackOff"):
        service.update(image="iris:2", timeout=10)
    # Back to what served: the Deployment replaced with the old image again (the old pods never left).
    assert scenario.calls() == [*APPLY_AGAIN, f"DELETE {AUTOSCALER}", *ROLLING, *APPLY_AGAIN, f"DELETE {AUTOSCALER}"]
    images = [b["spec"]["template"]["spec"]["containers"][0]["image"] for b in scenario.sent("PUT", DEPLOYMENT)]
    assert images == ["registry.example.com/aml/iris:2", "registry.example.com/aml/iris:1"]
    service.refresh()
    assert service.state is DeploymentState.HEALTHY and service.image_id == service.serving_image_id == "iris:1"
    assert "still serving iris:1" in (service.error or "")


def test_a_waiter_that_crashed_loses_nothing(ws: Workspace, scenario: Scenario) -> None:
    Deployment.create(ws, "iris", "iris:1", target="aks", wait=False)
    first = Deployment.get(ws, "iris")
    assert first.state is DeploymentState.TRANSITIONING and first.activity.status is ActivityStatus.RUNNING
    assert scenario.calls() == APPLY_NEW  # applied; nobody looked at the rollout yet
    Deployment.get(ws, "iris").wait_for_deployment(timeout=10)  # anyone's next look completes it
    assert Deployment.get(ws, "iris").state is DeploymentState.HEALTHY


def test_logs_come_from_the_pods(ws: Workspace, scenario: Scenario) -> None:
    service = _create(ws, scenario)
    logs = service.get_logs(tail=50)
    assert f"==> pod {NAME}-7d9c6b5f8d-x2k9q <==" in logs and "INFO ready" in logs
    log_request = scenario.requests[-1]
    assert log_request.query == {"container": ["scoring"], "tailLines": ["50"]}
    assert service.get_telemetry()["available"] is False  # said, not faked


def test_everything_is_checked_before_anything_is_created(ws: Workspace, scenario: Scenario) -> None:
    ws.register_compute_target("aks-runs", kind="kubernetes", config={"image": "registry.example.com/env:1"})
    with pytest.raises(ValidationError, match="registry_prefix"):
        Deployment.create(ws, "iris", "iris:1", target="aks-runs")
    with pytest.raises(ValidationError, match="'docker' builder"):
        Deployment.create(ws, "plain", "plain:1", target="aks")
    with pytest.raises(ValidationError, match="port"):
        Deployment.create(ws, "iris", "iris:1", target="aks", config={"port": 8080})
    assert scenario.requests == []
    assert [d.name for d in Deployment.list(ws)] == ["plain"]  # recorded Failed: it never reached the cluster
