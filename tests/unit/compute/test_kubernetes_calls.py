"""The kubernetes target's call sequence, made by the real kubernetes client through the
provider's ``KubernetesHook`` (an ``AIRFLOW_CONN_...`` kubeconfig) against recorded API responses
on 127.0.0.1; every body sent is validated again against the 1.32 schema."""

from __future__ import annotations

import time
from collections.abc import Iterator

import kubernetes_validate
import pytest

from airflow_aml.compute.kubernetes.config import KubernetesComputeConfig
from airflow_aml.compute.kubernetes.pod_run import PodRun
from airflow_aml.kubernetes.client import KubernetesClient
from airflow_aml.kubernetes.manifests import run_selector
from tests.unit.compute.k8s_recorded import BASE, POD, SECRET, Scenario, connection_env, recorded_kubernetes

CONN_ID = "k8s_recorded"
RUN_ID = "run-k8s-0001"
CONFIG = {
    "namespace": "ml",
    "image": "registry.example.com/aml-env:3.11",
    "cpu_request": "250m",
    "memory_limit": "1Gi",
    "service_account": "aml-runner",
    "kubernetes_conn_id": CONN_ID,
    "delete_grace_seconds": 5,
}
SEQUENCE = [
    f"GET {BASE}/pods",  # find the run's pod by label: none
    f"POST {BASE}/secrets",
    f"POST {BASE}/pods",
]
END = [f"DELETE {BASE}/pods/{POD}", f"DELETE {BASE}/secrets/{SECRET}"]


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def api_url(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with recorded_kubernetes(scenario) as url:
        for name, value in connection_env(CONN_ID, url).items():
            monkeypatch.setenv(name, value)
        yield url


def _pod_run(lines: list[str], **kwargs: object) -> PodRun:
    settings = KubernetesComputeConfig.parse(CONFIG)
    return PodRun(
        KubernetesClient(CONN_ID, "ml"),
        settings.pod_settings(),
        workspace="ws",
        run_id=RUN_ID,
        command=["python", "-m", "airflow_aml.compute.kubernetes.pod", "train.py"],
        environment={"AML_RUN_ID": RUN_ID, "AML_STORE_URI": "http://127.0.0.1:1"},
        run_token="run-token-value",
        token_env="AML_RUN_TOKEN",
        on_line=lines.append,
        poll_interval=0.01,
        delete_grace_seconds=5,
        **kwargs,  # type: ignore[arg-type]
    )


def _status_reads(scenario: Scenario) -> list[str]:
    return [c for c in scenario.calls() if c == f"GET {BASE}/pods/{POD}"]


def test_run_creates_secret_then_pod_follows_logs_and_deletes_both(scenario: Scenario, api_url: str) -> None:
    lines: list[str] = []
    running: list[bool] = []
    outcome = _pod_run(lines, on_running=lambda: running.append(True)).run()
    assert outcome.exit_code == 0 and not outcome.canceled and not outcome.reattached
    calls = scenario.calls()
    assert calls[:3] == SEQUENCE
    assert calls[-2:] == END
    middle = calls[3:-2]
    assert set(middle) == {f"GET {BASE}/pods/{POD}", f"GET {BASE}/pods/{POD}/log"}
    assert len(_status_reads(scenario)) == 3  # Pending, Running, Succeeded
    assert middle.index(f"GET {BASE}/pods/{POD}/log") >= 2  # logs only once the pod ran
    assert running == [True]
    assert lines[-3:] == ["epoch 1 loss 0.9", "epoch 2 loss 0.4", "done"]

    find, secret, pod = scenario.requests[:3]
    assert find.query["labelSelector"] == [run_selector("ws", RUN_ID)]
    log_request = next(r for r in scenario.requests if r.path.endswith("/log"))
    # The client sends Python booleans as "True"; the API server parses it with strconv.ParseBool.
    assert log_request.query["follow"] == ["True"] and log_request.query["container"] == ["base"]
    for body in (secret.body, pod.body):  # what reached the API is valid for 1.32, strictly
        kubernetes_validate.validate(body, "1.32", strict=True)
    assert secret.body["stringData"] == {"run-token": "run-token-value"}
    assert "run-token-value" not in str(pod.body)  # the pod only references the Secret
    assert pod.body["spec"]["serviceAccountName"] == "aml-runner"
    assert pod.body["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    delete = next(r for r in scenario.requests if r.method == "DELETE" and "/pods/" in r.path)
    assert delete.query.get("gracePeriodSeconds") == ["5"]


def test_failed_pod_reports_its_container_exit_code(scenario: Scenario, api_url: str) -> None:
    scenario.pod_states = ["pod_pending.json", "pod_failed.json"]
    outcome = _pod_run([]).run()
    assert outcome.exit_code == 3
    assert scenario.calls()[-2:] == END


def test_image_pull_backoff_fails_the_run_instead_of_waiting(scenario: Scenario, api_url: str) -> None:
    scenario.pod_states = ["pod_pending.json", "pod_image_pull_backoff.json"]
    outcome = _pod_run([]).run()
    assert outcome.exit_code is None and outcome.error and "ImagePullBackOff" in outcome.error
    assert scenario.calls()[-2:] == END


def test_cancel_deletes_the_running_pod(scenario: Scenario, api_url: str) -> None:
    scenario.pod_states = ["pod_running.json"]  # runs for ever unless deleted
    polls = iter(range(1000))
    outcome = _pod_run([], should_stop=lambda: next(polls) >= 3).run()
    assert outcome.canceled
    assert scenario.calls()[:3] == SEQUENCE and scenario.calls()[-2:] == END
    assert len(_status_reads(scenario)) == 4


def test_max_duration_deletes_the_pod(scenario: Scenario, api_url: str) -> None:
    scenario.pod_states = ["pod_running.json"]
    begun = time.monotonic()
    outcome = _pod_run([], max_duration=0.3).run()
    assert outcome.timed_out and time.monotonic() - begun < 10
    assert scenario.calls()[-2:] == END


def test_retry_finds_the_pod_by_label_and_creates_nothing(scenario: Scenario, api_url: str) -> None:
    scenario.existing_pod = True
    scenario.pod_states = ["pod_running.json", "pod_succeeded.json"]
    lines: list[str] = []
    outcome = _pod_run(lines).run()
    assert outcome.reattached and outcome.exit_code == 0
    calls = scenario.calls()
    assert calls[0] == f"GET {BASE}/pods"
    assert not [c for c in calls if c.startswith("POST")]  # no second pod, no second secret
    assert calls[-2:] == END
    assert lines[0] == f"Reattaching to pod {POD} of run {RUN_ID}"


def test_secret_left_by_an_earlier_attempt_is_replaced(scenario: Scenario, api_url: str) -> None:
    scenario.secret_exists = True
    outcome = _pod_run([]).run()
    assert outcome.exit_code == 0
    assert scenario.calls()[:4] == [*SEQUENCE[:2], f"PUT {BASE}/secrets/{SECRET}", f"POST {BASE}/pods"]


def test_delete_of_a_gone_pod_is_not_an_error(scenario: Scenario, api_url: str) -> None:
    client = KubernetesClient(CONN_ID, "ml")
    assert client.delete_pod("aml-run-someone-else") is False  # recorded 404 Status
    assert client.read_pod("aml-run-someone-else") is None
