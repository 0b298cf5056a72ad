"""``DockerComputeTarget``, the ``docker`` compute kind: a run's script in a container.

::

    ws.register_compute_target("docker-local", kind="docker", config={"cpus": 2, "memory": "2g"})
    ws.experiment("iris").submit("src/", RunConfiguration(script="train.py", target="docker-local"))

It is the local target with another supervisor (:mod:`.supervisor`): ``submit`` starts that
supervisor detached on this machine, and the supervisor builds the image and runs the container.
What differs from ``local``:

- the workspace must be served (``airflow-aml service``): the container gets the service URI and
  a run token, never a database URI or the submitter's token;
- ``cancel`` also stops the container itself when the supervisor is gone;
- ``worker_alive`` is true while the supervisor *or* the run's container (found by its labels)
  runs, so a waiter or a retried Airflow task keeps following a run whose container still works;
  when the supervisor is dead and the container is there, it starts a new supervisor that
  reattaches to the container (by label) and finalizes the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_aml.compute import register_compute_kind
from airflow_aml.compute.base import RunLaunch
from airflow_aml.compute.local import LocalComputeTarget
from airflow_aml.context import DATASTORE_PROPERTY, SNAPSHOT_NAME, WorkspaceContext, run_file
from airflow_aml.entities import ComputeTargetRecord, RunRecord
from airflow_aml.exceptions import AmlError, RunConfigurationError
from airflow_aml.images.docker.engine import docker_api_client
from airflow_aml.images.docker.runs.config import DockerComputeConfig
from airflow_aml.images.docker.runs.container import find_container, is_running, remove_container
from airflow_aml.images.docker.runs.supervisor import (
    DOCKER_SUPERVISOR_MODULE,
    supervisor_holds_lock,
)
from airflow_aml.runconfig import RunConfiguration

log = logging.getLogger(__name__)

KIND = "docker"


class DockerComputeTarget(LocalComputeTarget):
    kind = KIND
    supervisor_module = DOCKER_SUPERVISOR_MODULE

    def __init__(self, workspace: WorkspaceContext, record: ComputeTargetRecord | None) -> None:
        super().__init__(workspace, record)
        self.settings = DockerComputeConfig.parse(self.config, target=self.name)

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        DockerComputeConfig.parse(config)

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        # The base's checks (script, conda file); not the local target's uv check: pip in the image builds.
        super(LocalComputeTarget, self).validate(run_config, source_directory)
        if self.workspace.service_client is None:
            raise RunConfigurationError(
                f"Compute target {self.name!r} (docker) needs a served workspace: its containers log "
                "over HTTP with a run token and never get the database URI. Start the workspace service "
                "(`airflow-aml service`) and open the workspace with its URI "
                "(http://:TOKEN@host:port, or $AML_TOKEN with http://host:port)"
            )
        if run_config.environment.python is not None and "/" in run_config.environment.python:
            raise RunConfigurationError(
                f"Compute target {self.name!r} (docker) runs the image's Python: the environment cannot "
                f"name an interpreter path ({run_config.environment.python!r})"
            )
        try:
            import docker  # noqa: F401
        except ImportError as exc:
            raise RunConfigurationError(
                f"Compute target {self.name!r} needs the docker Python package: pip install 'airflow-aml[docker]'"
            ) from exc

    def target_settings(self) -> dict[str, Any]:
        return self.settings.model_dump(mode="json")

    def cancel(self, run_id: str) -> None:
        record = self.workspace.store.get_run(run_id)
        # Without a live supervisor here nobody stops the container on the flag: stop it first
        # (the local target then records the run Canceled).
        if (not record.status.is_terminal and super().worker_alive(record) is False
                and not supervisor_holds_lock(run_id)):
            self._stop_container(run_id, remove=True)
        super().cancel(run_id)  # the flag, and SIGTERM to a live supervisor, which stops the container

    def worker_alive(self, record: RunRecord) -> bool | None:
        """True while the supervisor or the run's container runs. A container found running with
        its supervisor dead (SIGKILL, OOM) gets a new supervisor, which follows it to the end."""
        verdict = super().worker_alive(record)
        if verdict is True or record.status.is_terminal:
            return verdict
        if supervisor_holds_lock(record.run_id):  # a reattached supervisor (its pid is not recorded)
            return True
        try:
            api = docker_api_client(self.settings.build_options(), timeout=10)
        except AmlError:
            return verdict  # no engine to ask: what the supervisor check said
        try:
            info = find_container(api, record.run_id)
        finally:
            api.close()
        if info is None:
            return verdict
        if verdict is False and record.parent_run_id is None and self._reattach(record):
            return True  # carried again (an exited container too: the new supervisor finalizes it)
        return True if is_running(info) else verdict

    def _reattach(self, record: RunRecord) -> bool:
        """Start a supervisor for a run whose container outlived its supervisor; it finds the
        container by label and follows it (a second one started meanwhile exits on its lock)."""
        log.info("Run %s: its supervisor is gone but its container is there; starting one to follow it",
                 record.run_id)
        try:
            # Not submit: the run's properties keep the first supervisor's pid (they are immutable);
            # the new one is known by the lock it holds.
            self.start_supervisor(RunLaunch(
                workspace=record.workspace, store_uri=self.workspace.store_uri, run_id=record.run_id,
                principal=record.submitted_by, run_config=dict(record.run_config),
                snapshot_path=run_file(record.run_id, SNAPSHOT_NAME),
                datastore=record.properties.get(DATASTORE_PROPERTY, ""),
            ))
        except Exception:
            log.warning("Could not start a supervisor to follow run %s", record.run_id, exc_info=True)
            return False
        return True

    def _stop_container(self, run_id: str, *, remove: bool = False) -> None:
        try:
            api = docker_api_client(self.settings.build_options(), timeout=30)
        except AmlError:
            log.warning("Cannot reach the Docker engine to stop the container of run %s", run_id)
            return
        try:
            info = find_container(api, run_id)
            if info is not None:
                if is_running(info):
                    api.stop(info["Id"], timeout=self.settings.stop_timeout)
                if remove:
                    remove_container(api, info["Id"])
        finally:
            api.close()


def register() -> None:
    """Register ``DockerComputeTarget`` as the ``docker`` compute kind (done on import)."""
    register_compute_kind(KIND, DockerComputeTarget)


register()
