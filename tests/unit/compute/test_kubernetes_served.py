"""A run submitted through the SDK on a served workspace to a ``kubernetes`` target: the detached
supervisor drives the recorded Kubernetes API (through ``KubernetesHook`` and an
``AIRFLOW_CONN_...`` kubeconfig) from Secret to Pod to logs to delete, and the run ends Completed
with the pod's log in it. The pod itself never runs (no cluster): what it would do is
``airflow_aml.compute.kubernetes.pod``, not exercised here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest

from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.workspace import Workspace
from tests.unit.compute.k8s_recorded import BASE, Scenario, connection_env, recorded_kubernetes
from tests.unit.compute.test_local_e2e import wait_for
from tests.unit.service.served import Served, serve

pytestmark = pytest.mark.slow

CONN_ID = "k8s_served"
CONFIG = {"namespace": "ml", "image": "registry.example.com/aml-env:3.11", "kubernetes_conn_id": CONN_ID}


@pytest.fixture
def served(aml_home: Path, tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never run here')\n")
    return src


def test_submitted_run_goes_secret_pod_logs_delete(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AML_PRINCIPAL", raising=False)
    scenario = Scenario(adopt_names=True)
    with recorded_kubernetes(scenario) as url:
        for name, value in connection_env(CONN_ID, url).items():
            monkeypatch.setenv(name, value)  # inherited by the detached supervisor
        ws = Workspace.create("demo", store_uri=served.uri_for("alice"), datastore_root=tmp_path / "datastore")
        ws.register_compute_target("aks", kind="kubernetes", config=CONFIG)
        run = ws.experiment("exp").submit(_source(tmp_path), RunConfiguration(script="train.py", target="aks"))
        record = wait_for(run)
        log_text = run.get_log_text()
        assert record.status is RunStatus.COMPLETED, f"{record.error}\n{log_text}"
    assert "epoch 2 loss 0.4" in log_text
    pod = scenario.pod
    calls = scenario.calls()
    assert calls[:3] == [f"GET {BASE}/pods", f"POST {BASE}/secrets", f"POST {BASE}/pods"]
    assert calls[-2:] == [f"DELETE {BASE}/pods/{pod}", f"DELETE {BASE}/secrets/{pod}-token"]
    secret, pod_body = scenario.requests[1].body, scenario.requests[2].body
    for body in (secret, pod_body):
        kubernetes_validate.validate(body, "1.32", strict=True)
    token = secret["stringData"]["run-token"]
    assert token.startswith("aml_run_")  # a run token, not alice's personal token
    env = {e["name"]: e for e in pod_body["spec"]["containers"][0]["env"]}
    assert env["AML_RUN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": f"{pod}-token", "key": "run-token"}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == f"{pod}-token"
    assert token not in str(pod_body)  # every variable carrying the token reads it from the Secret
    store_uri = env["AML_STORE_URI"]["value"]
    assert store_uri.startswith("http://127.0.0.1:") and "@" not in store_uri  # never a DB URI, no token
    assert pod_body["metadata"]["annotations"]["aml.airflow.apache.org/run-id"] == run.id


def test_unserved_workspace_is_refused_at_submit(aml_home: Path, tmp_path: Path) -> None:
    ws = Workspace.create("local", store_uri=f"sqlite:///{tmp_path / 'ws.db'}", datastore_root=tmp_path / "ds")
    ws.register_compute_target("aks", kind="kubernetes", config=CONFIG)
    with pytest.raises(RunConfigurationError, match="needs a served workspace"):
        ws.experiment("exp").submit(_source(tmp_path), RunConfiguration(script="train.py", target="aks"))
