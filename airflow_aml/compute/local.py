"""The ``local`` compute target: runs execute on this machine under a detached supervisor.

``submit`` starts ``python -m airflow_aml.compute.run_supervisor`` in a new session and returns. The
supervisor is not a child that must be waited for: it survives the submitting process (an Airflow
task that defers or is killed, a closed notebook) and finalizes the run on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_aml.compute import environments
from airflow_aml.compute.base import AbstractComputeTarget, RunLaunch
from airflow_aml.compute.run_supervisor import SUPERVISOR_MODULE, TARGET_CONFIG_FILE, run_dir
from airflow_aml.entities import ActivityStatus, RunRecord, RunStatus
from airflow_aml.exceptions import AmlError, EnvironmentBuildError, NotFoundError, RunConfigurationError
from airflow_aml.processes import alive_here, spawn_detached, this_host, worker_environment
from airflow_aml.runconfig import RunConfiguration

log = logging.getLogger(__name__)

LEGACY_SUPERVISOR_MODULE = "airflow_aml.compute.supervisor"
PROP_PID = "local.supervisor_pid"
PROP_HOST = "local.host"


class LocalComputeTarget(AbstractComputeTarget):
    kind = "local"
    # The module started as the run's detached supervisor (the docker target starts its own).
    supervisor_module = SUPERVISOR_MODULE

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        super().validate(run_config, source_directory)
        if run_config.environment.kind == "virtualenv":
            try:
                environments.find_uv()
            except EnvironmentBuildError as exc:
                raise RunConfigurationError(
                    f"Compute target {self.name!r} cannot build the run's virtualenv: {exc}"
                ) from exc

    def submit(self, launch: RunLaunch) -> None:
        proc = self.start_supervisor(launch)
        try:
            self.workspace.store.add_run_properties(launch.run_id, {PROP_PID: str(proc.pid), PROP_HOST: this_host()})
        except Exception:
            # The run goes on without it; only cancel's SIGTERM shortcut and waiters need the pid.
            log.warning("Could not record the supervisor pid of run %s", launch.run_id, exc_info=True)

    def target_settings(self) -> dict[str, Any] | None:
        """What a kind's supervisor reads back with ``read_target_settings`` (None: nothing)."""
        return None

    def start_supervisor(self, launch: RunLaunch) -> subprocess.Popen[bytes]:
        """Start the run's detached supervisor; fails the run (and raises) when it cannot start."""
        store = self.workspace.store
        folder = run_dir(launch.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "run_config.json"
        _write_private_json(config_file, launch.run_config)
        settings = self.target_settings()
        if settings is not None:
            _write_private_json(folder / TARGET_CONFIG_FILE, settings)
        command = [
            sys.executable, "-m", self.supervisor_module,
            "--run-id", launch.run_id,
            "--workspace", launch.workspace,
            "--principal", launch.principal,
            "--snapshot-path", launch.snapshot_path,
            "--run-config-file", str(config_file),
        ]
        if launch.datastore:
            command += ["--datastore", launch.datastore]
        store_uri, run_token = self._credentials(launch)
        env = worker_environment(os.environ, store_uri=store_uri, principal=launch.principal, run_token=run_token)
        try:
            # SIGTERM blocked until the supervisor's handler exists: a cancel that arrives while
            # it imports stays pending instead of killing it before it can finalize the run.
            proc = spawn_detached(command, cwd=folder, env=env, log_path=folder / "supervisor.log",
                                  block_sigterm=True)
        except OSError as exc:
            error = f"Could not start the local supervisor of run {launch.run_id!r}: {exc}"
            store.update_run_status(launch.run_id, RunStatus.FAILED, error=error)
            with contextlib.suppress(NotFoundError):
                store.update_activity(launch.run_id, status=ActivityStatus.FAILED, progress=1.0, error=error)
            raise AmlError(error) from exc
        log.info("Started supervisor pid %s for run %s (log: %s)", proc.pid, launch.run_id,
                 folder / "supervisor.log")
        return proc

    def _credentials(self, launch: RunLaunch) -> tuple[str, str | None]:
        """The store URI and run token the supervisor and script act with.

        On a served workspace the submitter's personal token stays here: the run's processes get
        the service URL without it and a run token minted for this run (its descendants, e.g. a
        sweep's children, included), naming the secrets of the run configuration. Elsewhere the
        store URI as submitted, and no token.
        """
        client = self.workspace.service_client
        if client is None:
            return launch.store_uri, None
        from airflow_aml.store.http.client import split_uri  # httpx only when served: the SDK stays light

        secrets = list(launch.run_config.get("secrets") or ())
        answer = client.request(
            "POST", f"/runs/{quote(launch.run_id, safe='')}/tokens",
            content=json.dumps({"secrets": secrets}).encode(), json_body=True,
        ).json()
        return split_uri(launch.store_uri)[0], str(answer["token"])

    def cancel(self, run_id: str) -> None:
        store = self.workspace.store
        record = store.request_cancel(run_id)
        if record.status.is_terminal:
            return
        carrier = self._carrier(record)
        alive = self._supervisor_alive(carrier)
        if alive is None:
            # Not started yet, or supervised on another machine: that supervisor polls the flag.
            return
        if alive:
            # A sweep's child runs inside its parent's supervisor, which polls the child's flag:
            # a signal would cancel the whole sweep.
            if carrier.run_id == run_id:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(carrier.properties[PROP_PID]), signal.SIGTERM)
            return
        # The supervisor is gone (SIGKILL, reboot) and nobody else will end the run.
        current = store.get_run(run_id)
        if not current.status.is_terminal:
            pid, host = carrier.properties.get(PROP_PID), carrier.properties.get(PROP_HOST)
            error = f"Canceled; the supervisor (pid {pid} on {host}) of run {run_id!r} was no longer running"
            store.update_run_status(run_id, RunStatus.CANCELED, error=error)
            with contextlib.suppress(NotFoundError):
                store.update_activity(run_id, status=ActivityStatus.CANCELED, progress=1.0, message="Canceled")

    def worker_alive(self, record: RunRecord) -> bool | None:
        """The run's supervisor (a sweep's children run in their parent's) on this machine."""
        return self._supervisor_alive(self._carrier(record))

    def _carrier(self, record: RunRecord) -> RunRecord:
        """The run whose supervisor carries ``record``: itself, or the sweep parent it runs in."""
        carrier = record
        while PROP_PID not in carrier.properties and carrier.parent_run_id:
            carrier = self.workspace.store.get_run(carrier.parent_run_id)
        return carrier

    def _supervisor_alive(self, carrier: RunRecord) -> bool | None:
        props = carrier.properties
        module = (self.supervisor_module, LEGACY_SUPERVISOR_MODULE)  # runs started before the rename
        return alive_here(props.get(PROP_PID), props.get(PROP_HOST), (module, carrier.run_id))


def _write_private_json(path: Path, data: Any) -> None:
    # 0600: environment_variables and target settings may carry credentials not meant to be published.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
