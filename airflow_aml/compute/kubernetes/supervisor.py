"""The supervisor of a kubernetes run: the local supervisor, with the script in a pod.

Started detached by ``KubernetesComputeTarget.submit`` as ``python -m
airflow_aml.compute.kubernetes``. It keeps the local supervisor's bookkeeping (status, activity,
run log, finalize) and replaces its two steps: no environment is built here (the pod's image is
the environment), and the script runs in the run's pod (:mod:`.pod_run`), whose output is
followed into the run log. The pod gets the service URI in its environment and the run token
from a per-run Secret, never the database URI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_aml.compute.kubernetes.config import KubernetesComputeConfig
from airflow_aml.compute.kubernetes.pod_run import PodRun
from airflow_aml.compute.logstream import LogBatcher
from airflow_aml.compute.phases import CONTROL, control
from airflow_aml.compute.run_supervisor import Supervisor, read_target_settings
from airflow_aml.compute.run_supervisor import main as supervisor_main
from airflow_aml.compute.script import ScriptOutcome
from airflow_aml.config import (
    ENV_HOME,
    ENV_PARENT_RUN_ID,
    ENV_PRINCIPAL,
    ENV_RUN_ID,
    ENV_RUN_TOKEN,
    ENV_STORE_URI,
    ENV_WORKSPACE,
    MLFLOW_RUN_VARIABLES,
)
from airflow_aml.kubernetes.client import KubernetesClient
from airflow_aml.runconfig import RunConfiguration

KUBERNETES_SUPERVISOR_MODULE = "airflow_aml.compute.kubernetes"  # its __main__
POD_HOME = "/tmp/aml"
POD_ENTRY = ["python", "-m", "airflow_aml.compute.kubernetes.pod"]


class KubernetesSupervisor(Supervisor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_config = KubernetesComputeConfig.parse(read_target_settings(self.run_id))

    def prepare_environment(self, config: RunConfiguration, work: Path, batcher: LogBatcher) -> str:
        return self.target_config.pod_image  # the image is the environment: nothing to build here

    def run_script(
        self,
        run_id: str,
        config: RunConfiguration,
        interpreter: str,
        work: Path,
        batcher: LogBatcher,
        *,
        parent_run_id: str | None = None,
    ) -> ScriptOutcome:
        env, token = self.pod_environment(run_id, config, parent_run_id)
        # Every variable carrying the token (AML_RUN_TOKEN, the mlflow client's) comes from the Secret.
        token_names = [ENV_RUN_TOKEN, *sorted(n for n, v in env.items() if token and v == token)]
        env = {n: v for n, v in env.items() if n not in token_names}
        settings = self.target_config
        pod = PodRun(
            KubernetesClient(settings.kubernetes_conn_id, settings.namespace),
            settings.pod_settings(),
            workspace=self.workspace,
            run_id=run_id,
            command=[*POD_ENTRY, config.script, *config.arguments],
            environment=env,
            run_token=token,
            token_env=token_names,
            on_line=lambda line: batcher.line("stdout", line),
            on_running=lambda: self.mark_running(run_id),
            should_stop=lambda: self.stop.is_set() or self.store.get_run(run_id).cancel_requested,
            max_duration=config.max_run_duration_seconds,
            pending_timeout=settings.pending_timeout_seconds,
            poll_interval=min(self.poll_interval, 2.0),
            delete_grace_seconds=settings.delete_grace_seconds,
        )
        control(batcher, f"Running {config.script} in a pod of namespace {settings.namespace}")
        result = pod.run()
        outcome = ScriptOutcome(exit_code=result.exit_code, canceled=result.canceled, timed_out=result.timed_out)
        if result.error:
            batcher.line(CONTROL, result.error)
            outcome.stderr_tail = [result.error]
        return outcome

    def pod_environment(
        self, run_id: str, config: RunConfiguration, parent_run_id: str | None
    ) -> tuple[dict[str, str], str | None]:
        """The pod's variables (the run token apart: it goes into the run's Secret)."""
        identity = self.identity(run_id, parent_run_id)
        env = dict(config.environment_variables)
        env.update(
            {
                ENV_RUN_ID: run_id,
                ENV_WORKSPACE: self.workspace,
                ENV_STORE_URI: identity[ENV_STORE_URI],
                ENV_PRINCIPAL: identity[ENV_PRINCIPAL],
                ENV_HOME: POD_HOME,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({name: identity[name] for name in MLFLOW_RUN_VARIABLES if name in identity})
        if parent_run_id is not None:
            env[ENV_PARENT_RUN_ID] = parent_run_id
        env.pop(ENV_RUN_TOKEN, None)
        return env, identity.get(ENV_RUN_TOKEN) or os.environ.get(ENV_RUN_TOKEN)


def main(argv: list[str] | None = None) -> int:
    return supervisor_main(argv, supervisor_class=KubernetesSupervisor)
