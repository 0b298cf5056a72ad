"""``KubernetesComputeTarget``, the ``kubernetes`` compute kind: a run's script in a Pod.

::

    ws.register_compute_target("aks", kind="kubernetes", config={"namespace": "ml", "image": "..."})
    ws.experiment("iris").submit("src/", RunConfiguration(script="train.py", target="aks"))

The local target with another supervisor (:mod:`.supervisor`), which creates and follows the pod.
The workspace must be served: the pod logs over HTTP with a run token. ``cancel`` also deletes
the pod when the supervisor is gone; ``worker_alive`` is true while the supervisor runs or the
run's pod (found by label) is there.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_aml.compute import register_compute_kind
from airflow_aml.compute.kubernetes.config import KubernetesComputeConfig
from airflow_aml.compute.kubernetes.supervisor import KUBERNETES_SUPERVISOR_MODULE
from airflow_aml.compute.local import LocalComputeTarget
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ComputeTargetRecord, RunRecord
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.kubernetes.client import HOOK_MODULE, KubernetesClient, pod_phase
from airflow_aml.kubernetes.manifests import dns_name, run_selector
from airflow_aml.runconfig import RunConfiguration

log = logging.getLogger(__name__)

KIND = "kubernetes"


class KubernetesComputeTarget(LocalComputeTarget):
    kind = KIND
    supervisor_module = KUBERNETES_SUPERVISOR_MODULE

    def __init__(self, workspace: WorkspaceContext, record: ComputeTargetRecord | None) -> None:
        super().__init__(workspace, record)
        self.settings = KubernetesComputeConfig.parse(self.config, target=self.name)

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        KubernetesComputeConfig.parse(config)

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        super(LocalComputeTarget, self).validate(run_config, source_directory)  # no local uv needed
        if self.workspace.service_client is None:
            raise RunConfigurationError(
                f"Compute target {self.name!r} (kubernetes) needs a served workspace: its pods log over "
                "HTTP with a run token and never get the database URI. Start `airflow-aml service` and "
                "open the workspace with its URI"
            )
        if run_config.environment.python is not None and "/" in run_config.environment.python:
            raise RunConfigurationError(
                f"Compute target {self.name!r} (kubernetes) runs the image's Python: the environment cannot "
                f"name an interpreter path ({run_config.environment.python!r})"
            )
        if importlib.util.find_spec("kubernetes") is None or _find_spec(HOOK_MODULE) is None:
            raise RunConfigurationError(f"Compute target {self.name!r} needs apache-airflow-providers-cncf-kubernetes")

    def target_settings(self) -> dict[str, Any]:
        return self.settings.model_dump(mode="json")

    def client(self) -> KubernetesClient:
        return KubernetesClient(self.settings.kubernetes_conn_id, self.settings.namespace)

    def cancel(self, run_id: str) -> None:
        record = self.workspace.store.get_run(run_id)
        # No live supervisor to act on the flag: delete the run's pod here.
        if not record.status.is_terminal and super().worker_alive(record) is False:
            try:
                client = self.client()
                client.delete_pod(dns_name("aml-run", run_id), grace_period_seconds=self.settings.delete_grace_seconds)
                client.delete_secret(dns_name("aml-run", run_id, "token"))
            except Exception:
                log.warning("Could not delete the pod of run %s", run_id, exc_info=True)
        super().cancel(run_id)

    def worker_alive(self, record: RunRecord) -> bool | None:
        """True while the supervisor runs or the run's pod (found by label) is not ended."""
        verdict = super().worker_alive(record)
        if verdict is True or record.status.is_terminal:
            return verdict
        try:
            pods = self.client().find_pods(run_selector(record.workspace, record.run_id))
        except Exception:
            log.warning("Could not ask Kubernetes for the pod of run %s", record.run_id, exc_info=True)
            return verdict
        if any(pod_phase(p) in ("Pending", "Running") for p in pods):
            return True
        return verdict


def _find_spec(module: str) -> object | None:
    try:
        return importlib.util.find_spec(module)
    except ImportError:  # a parent package (airflow) is missing
        return None


def register() -> None:
    """Register ``KubernetesComputeTarget`` as the ``kubernetes`` compute kind (done on import)."""
    register_compute_kind(KIND, KubernetesComputeTarget)


register()
