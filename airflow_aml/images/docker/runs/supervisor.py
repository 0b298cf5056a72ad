"""The supervisor of a docker run: the local supervisor, with the script in a container.

Started detached by ``DockerComputeTarget.submit`` as ``python -m airflow_aml.images.docker.runs``
(the package's ``__main__``) on the submitting machine. It downloads and extracts the
snapshot and finalizes the run exactly as the local supervisor does (it *is* that supervisor,
:class:`~airflow_aml.compute.run_supervisor.Supervisor`); two steps differ:

- the environment is an image (:mod:`.image`), not a virtualenv;
- the script runs in a container (:mod:`.container`) with the service URI and the run's run token
  in its environment, its output followed into the run log, cancel and the time limit stopping
  it, and ``outputs/`` copied out of it for the upload. The run's status follows the container's
  exit code.

A supervisor that finds the run's container already there (it was started again for the run)
follows that container instead of starting a second one.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import Any

from airflow_aml.compute.heartbeat import Heartbeat
from airflow_aml.compute.logstream import LogBatcher, Tail
from airflow_aml.compute.phases import CONTROL, control
from airflow_aml.compute.run_supervisor import Interrupted, Supervisor, read_target_settings, run_dir
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
from airflow_aml.entities import RunRecord, RunStatus
from airflow_aml.images.docker.engine import docker_api_client
from airflow_aml.images.docker.runs.config import DockerComputeConfig
from airflow_aml.images.docker.runs.container import (
    copy_outputs,
    create_container,
    find_container,
    is_running,
    remove_container,
    started_at,
    stream_logs,
)
from airflow_aml.images.docker.runs.image import ensure_environment_image, ensure_run_image, image_requirements
from airflow_aml.runconfig import RunConfiguration

log = logging.getLogger(__name__)

DOCKER_SUPERVISOR_MODULE = "airflow_aml.images.docker.runs"  # its __main__
CONTAINER_HOME = "/tmp/aml"
LOCK_FILE = "docker-supervisor.lock"  # in the run's folder: held by the run's live supervisor
_STATE_POLL_SECONDS = 0.25


def supervisor_holds_lock(run_id: str) -> bool:
    """Whether a supervisor on this machine holds the run's lock (it is alive and carries the run)."""
    path = run_dir(run_id) / LOCK_FILE
    if not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class DockerSupervisor(Supervisor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_config = DockerComputeConfig.parse(read_target_settings(self.run_id))
        self.options = self.target_config.build_options()

    def prepare_environment(self, config: RunConfiguration, work: Path, batcher: LogBatcher) -> str:
        """The environment image's tag (stands for the interpreter the local supervisor returns)."""
        requirements, python = image_requirements(config.environment, work)

        def log_line(line: str) -> None:
            # A cancel (SIGTERM) during a long pip install: leave the build at its next log line;
            # closing the connection makes the engine abandon it.
            if self.stop.is_set():
                raise Interrupted()
            batcher.line(CONTROL, line)

        api = docker_api_client(self.options)
        try:
            return ensure_environment_image(api, self.options, requirements=requirements, python=python,
                                            log=log_line)
        finally:
            api.close()

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
        api = docker_api_client(self.options)
        try:
            return self._run_in_container(api, run_id, config, interpreter, work, batcher, parent_run_id)
        finally:
            api.close()

    def _run_in_container(
        self, api: Any, run_id: str, config: RunConfiguration, env_image: str, work: Path,
        batcher: LogBatcher, parent_run_id: str | None,
    ) -> ScriptOutcome:
        info = find_container(api, run_id)
        if info is not None:  # started by an earlier supervisor of this run: follow that one
            control(batcher, f"Reattaching to container {str(info['Id'])[:12]} of run {run_id}")
            return self._follow(api, info, run_id, config, work, batcher)
        image = ensure_run_image(api, self.options, env_image=env_image, work=work,
                                 log=lambda line: batcher.line(CONTROL, line))
        self.check_cancel(run_id)
        container_id = create_container(
            api, self.target_config, image=image, command=["python", config.script, *config.arguments],
            environment=self.container_environment(run_id, config, parent_run_id),
            workspace=self.workspace, run_id=run_id,
        )
        control(batcher, f"Starting container {container_id[:12]} from {image}: python "
                + " ".join([config.script, *config.arguments]))
        try:
            api.start(container_id)
        except BaseException:
            remove_container(api, container_id)
            raise
        return self._follow(api, api.inspect_container(container_id), run_id, config, work, batcher)

    def _follow(
        self, api: Any, info: dict[str, Any], run_id: str, config: RunConfiguration, work: Path,
        batcher: LogBatcher, *, logs_since: float | None = None,
    ) -> ScriptOutcome:
        """Watch the started container to its end: its output into the run log, cancel and the
        time limit, then its exit code and ``outputs/`` (copied into ``work``); removes it."""
        container_id = str(info["Id"])
        self.mark_running(run_id)
        begun = started_at(info) or time.time()
        tail = Tail(max_lines=20)
        followers = [
            threading.Thread(target=stream_logs, args=(api, container_id, "stdout", batcher),
                             kwargs={"since": logs_since}, daemon=True),
            threading.Thread(target=stream_logs, args=(api, container_id, "stderr", batcher, tail),
                             kwargs={"since": logs_since}, daemon=True),
        ]
        for thread in followers:
            thread.start()
        outcome = ScriptOutcome(exit_code=None)
        try:
            outcome.canceled, outcome.timed_out = self._watch(api, container_id, run_id, config, begun)
            if outcome.canceled or outcome.timed_out:
                api.stop(container_id, timeout=self.target_config.stop_timeout)
            state = api.wait(container_id)
            outcome.exit_code = int(state.get("StatusCode", -1))
            for thread in followers:
                thread.join(timeout=10)
            outcome.stderr_tail = tail.lines()
            if (api.inspect_container(container_id).get("State") or {}).get("OOMKilled"):
                outcome.stderr_tail.append(f"The container ran out of memory (limit {self.target_config.memory})")
            outcome.duration = time.time() - begun
            if copy_outputs(api, container_id, work):
                control(batcher, "Copied outputs/ out of the container")
        finally:
            remove_container(api, container_id)
        return outcome

    # ------------------------------------------------------------------ a supervisor started again
    def run(self) -> int:
        """Carry the run; when its container is already there (the run's first supervisor was
        killed), follow that container to the run's end instead of preparing anything again.

        One supervisor at a time per run (a lock file in the run's folder): a second one started
        for the same run exits at once.
        """
        folder = run_dir(self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / LOCK_FILE, "w")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Another supervisor carries run %s; exiting", self.run_id)
            return 0
        record = self.store.get_run(self.run_id)
        if record.status.is_terminal:
            return 0
        api = docker_api_client(self.options)
        try:
            info = find_container(api, self.run_id) if record.parent_run_id is None else None
            if info is None:
                return super().run()
            with Heartbeat(self.store, self.run_id):
                return self._reattach(api, info, record)
        finally:
            api.close()

    def _reattach(self, api: Any, info: dict[str, Any], record: RunRecord) -> int:
        run_id = self.run_id
        batcher = LogBatcher(self.store, run_id)
        try:
            config = RunConfiguration.from_dict(self.run_config if self.run_config is not None
                                                else record.run_config, source=f"run configuration of run {run_id!r}")
            work = run_dir(run_id) / "work"
            work.mkdir(parents=True, exist_ok=True)
            control(batcher, f"Reattaching to container {str(info['Id'])[:12]} of run {run_id} "
                    "(its earlier supervisor is gone)")
            # Output from about where the earlier supervisor stopped: its last heartbeat.
            since = record.heartbeat_at.timestamp() if record.heartbeat_at else None
            driver_log = run_dir(run_id) / "driver_log.txt"
            with open(driver_log, "a", encoding="utf-8") as mirror:
                batcher.set_mirror(mirror)
                try:
                    outcome = self._follow(api, info, run_id, config, work, batcher, logs_since=since)
                finally:
                    batcher.flush()
                    batcher.set_mirror(None)
            status = self.finalize(run_id, config, outcome, work, driver_log, batcher)
        except BaseException as exc:
            log.exception("Supervisor of run %s failed", run_id)
            status = self.end(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", batcher=batcher)
        finally:
            batcher.close()
        return 0 if status is RunStatus.COMPLETED else 1

    def _watch(self, api: Any, container_id: str, run_id: str, config: RunConfiguration,
               begun: float) -> tuple[bool, bool]:
        """Wait for the container to end; (canceled, timed_out) when it has to be stopped."""
        limit = config.max_run_duration_seconds
        next_poll = time.monotonic() + self.poll_interval
        while is_running(api.inspect_container(container_id)):
            if self.stop.is_set():
                return True, False
            if limit and time.time() - begun >= limit:
                return False, True
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_interval
                if self._cancel_requested(run_id):
                    return True, False
            self.stop.wait(_STATE_POLL_SECONDS)
        return False, False

    def _cancel_requested(self, run_id: str) -> bool:
        try:
            return self.store.get_run(run_id).cancel_requested
        except Exception:
            log.warning("Could not poll cancel flag of run %s", run_id, exc_info=True)
            return False

    def container_environment(self, run_id: str, config: RunConfiguration,
                              parent_run_id: str | None) -> dict[str, str]:
        """The script's environment: the run configuration's variables, then the run's identity:
        the service URI and the run token (the target refuses workspaces that are not served, so
        no database URI can get here), and a home inside the container."""
        identity = self.identity(run_id, parent_run_id)
        env = dict(config.environment_variables)
        env.update({
            ENV_RUN_ID: run_id,
            ENV_WORKSPACE: self.workspace,
            ENV_STORE_URI: identity[ENV_STORE_URI],
            ENV_PRINCIPAL: identity[ENV_PRINCIPAL],
            ENV_HOME: CONTAINER_HOME,
            "PYTHONUNBUFFERED": "1",
        })
        if ENV_RUN_TOKEN in identity:
            env[ENV_RUN_TOKEN] = identity[ENV_RUN_TOKEN]
        env.update({name: identity[name] for name in MLFLOW_RUN_VARIABLES if name in identity})
        if parent_run_id is not None:
            env[ENV_PARENT_RUN_ID] = parent_run_id
        return env


def main(argv: list[str] | None = None) -> int:
    return supervisor_main(argv, supervisor_class=DockerSupervisor)
