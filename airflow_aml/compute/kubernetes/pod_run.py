"""One run's pod from creation to its end: :class:`PodRun`.

Separate from the supervisor (which owns the store, the run log and the status) so that the call
sequence can be driven on its own against recorded API responses::

    find the run's pod by label --(none)--> create Secret -> create Pod
    -> read status until Running (on_running) -> follow logs -> read status until Succeeded/Failed
    -> delete Pod -> delete Secret

A pod already there (an earlier supervisor of the run was killed, the Airflow task retried) is
followed instead of creating a second one. Cancel and the time limit delete the pod (with its
grace period, so the script gets SIGTERM first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_aml.kubernetes.client import KubernetesClient, exit_code, pod_phase, waiting_reason
from airflow_aml.kubernetes.manifests import PodSpecSettings, dns_name, run_pod, run_secret, run_selector

log = logging.getLogger(__name__)

_MAX_POLLS = 10_000_000  # a bound on the status loop; the time limits end it long before


@dataclass
class PodOutcome:
    exit_code: int | None
    canceled: bool = False
    timed_out: bool = False
    error: str | None = None
    reattached: bool = False
    pod_name: str = ""


class PodRun:
    def __init__(
        self,
        client: KubernetesClient,
        settings: PodSpecSettings,
        *,
        workspace: str,
        run_id: str,
        command: Sequence[str],
        environment: Mapping[str, str],
        run_token: str | None,
        token_env: str | Sequence[str],
        on_line: Callable[[str], None],
        on_running: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        max_duration: float | None = None,
        pending_timeout: float = 600.0,
        poll_interval: float = 0.5,
        delete_grace_seconds: int = 10,
    ) -> None:
        self.client = client
        self.settings = settings
        self.workspace = workspace
        self.run_id = run_id
        self.command = list(command)
        self.environment = dict(environment)
        self.run_token = run_token
        self.token_env = token_env
        self.on_line = on_line
        self.on_running = on_running
        self.should_stop = should_stop
        self.max_duration = max_duration
        self.pending_timeout = pending_timeout
        self.poll_interval = poll_interval
        self.delete_grace_seconds = delete_grace_seconds
        self.pod_name = dns_name("aml-run", run_id)
        self.secret_name = dns_name("aml-run", run_id, "token")

    def find(self) -> dict[str, Any] | None:
        """The run's pod found by its labels (a retried task's reattach), or None."""
        pods = self.client.find_pods(run_selector(self.workspace, self.run_id))
        return pods[0] if pods else None

    def run(self) -> PodOutcome:
        existing = self.find()
        if existing is not None:
            self.pod_name = existing["metadata"]["name"]
            self.on_line(f"Reattaching to pod {self.pod_name} of run {self.run_id}")
        else:
            if self.run_token is not None:
                self.client.create_secret(
                    run_secret(self.settings, workspace=self.workspace, run_id=self.run_id, run_token=self.run_token)
                )
            self.client.create_pod(
                run_pod(
                    self.settings,
                    workspace=self.workspace,
                    run_id=self.run_id,
                    command=self.command,
                    environment=self.environment,
                    secret_name=self.secret_name if self.run_token else None,
                    secret_env=self.token_env,
                )
            )
            self.on_line(f"Created pod {self.pod_name} in namespace {self.settings.namespace} ({self.settings.image})")
        try:
            outcome = self._watch()
        finally:
            self.client.delete_pod(self.pod_name, grace_period_seconds=self.delete_grace_seconds)
            self.client.delete_secret(self.secret_name)
        outcome.reattached = existing is not None
        outcome.pod_name = self.pod_name
        return outcome

    def _watch(self) -> PodOutcome:
        begun = time.monotonic()
        follower: threading.Thread | None = None
        for _ in range(_MAX_POLLS):
            pod = self.client.read_pod(self.pod_name)
            phase = pod_phase(pod)
            if phase in ("Running", "Succeeded", "Failed") and follower is None:
                self.on_running()
                follower = threading.Thread(target=self._follow_logs, daemon=True)
                follower.start()
            if phase in ("Succeeded", "Failed", "Gone"):
                if follower is not None:
                    follower.join(timeout=30)
                if pod is None:
                    return PodOutcome(exit_code=None, error=f"Pod {self.pod_name} disappeared")
                code = exit_code(pod)
                return PodOutcome(exit_code=code if code is not None else (0 if phase == "Succeeded" else 1))
            if pod is not None and (reason := waiting_reason(pod)):
                return PodOutcome(exit_code=None, error=f"Pod {self.pod_name} cannot start: {reason}")
            if phase == "Pending" and follower is None and time.monotonic() - begun > self.pending_timeout:
                return PodOutcome(
                    exit_code=None, error=f"Pod {self.pod_name} still Pending after {self.pending_timeout:.0f}s"
                )
            if self.should_stop():
                return PodOutcome(exit_code=None, canceled=True)
            if self.max_duration and time.monotonic() - begun >= self.max_duration:
                return PodOutcome(exit_code=None, timed_out=True)
            time.sleep(self.poll_interval)
        return PodOutcome(exit_code=None, error="status polls exhausted")

    def _follow_logs(self) -> None:
        try:
            for line in self.client.follow_logs(self.pod_name):
                self.on_line(line)
        except Exception as exc:  # the pod was deleted mid-stream (cancel): the status says why
            log.info("Log stream of pod %s ended: %s", self.pod_name, exc)
