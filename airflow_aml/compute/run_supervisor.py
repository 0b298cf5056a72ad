"""The process that carries one local run from Queued to a terminal status.

Started detached by ``LocalComputeTarget.submit`` as ``python -m airflow_aml.compute.run_supervisor``;
it outlives the submitting process (an Airflow task that defers, a notebook that is closed). It

1. downloads the run's snapshot and extracts it into a fresh ``$AML_HOME/runs/<run_id>/work``
   (never the user's source directory, which may change while the run is queued);
2. prepares the Python environment (``environments.prepare_python``);
3. runs the script in its own process group, streaming output to the run log, honouring cancel
   requests and ``max_run_duration_seconds``;
4. uploads ``./outputs`` and the driver log, and sets the final status and activity.

A sweep's parent does not run the script: ``sweep.run_sweep`` starts one child run per grid point
through the same ``execute`` path. Whatever goes wrong in here ends the run Failed with the reason,
so that no run stays Running forever (only SIGKILL of this process can still do that).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_aml.activities import RUN_ACTIVITY_STATUS
from airflow_aml.compute.environments import prepare_python
from airflow_aml.compute.heartbeat import Heartbeat
from airflow_aml.compute.logstream import LogBatcher
from airflow_aml.compute.phases import (
    CONTROL,
    PROGRESS_ENVIRONMENT,
    PROGRESS_FINALIZING,
    PROGRESS_PREPARING,
    PROGRESS_RUNNING,
    control,
)
from airflow_aml.compute.script import ScriptOutcome, ScriptRunner, build_script_env
from airflow_aml.compute.sweep import run_sweep
from airflow_aml.config import (
    ENV_HOME,
    ENV_PARENT_RUN_ID,
    ENV_PRINCIPAL,
    ENV_RUN_ID,
    ENV_RUN_TOKEN,
    ENV_STORE_URI,
    ENV_WORKSPACE,
    aml_home,
    current_principal,
    mlflow_environment,
)
from airflow_aml.context import OUTPUTS_DIR, WorkspaceContext, run_file, run_prefix
from airflow_aml.datastores.base import AbstractDatastore
from airflow_aml.entities import ActivityStatus, RunRecord, RunStatus
from airflow_aml.exceptions import NotFoundError
from airflow_aml.names import validate_name
from airflow_aml.processes import KILL_GRACE_SECONDS
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.snapshots import safe_extract
from airflow_aml.store import get_store
from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)

SUPERVISOR_MODULE = "airflow_aml.compute.run_supervisor"
_ERROR_TAIL_LINES = 20


class Interrupted(BaseException):
    """Raised (synchronously, between steps) to abandon a run that was canceled before its script
    started. A BaseException so that code catching ``Exception`` cannot turn it into a failure."""


def run_dir(run_id: str) -> Path:
    """The local folder of a run: supervisor log, work folder, driver log."""
    return aml_home() / "runs" / validate_name("run", run_id)


# A compute kind's settings (its target's validated config), written beside the run config by
# LocalComputeTarget.start_supervisor and read back by that kind's supervisor.
TARGET_CONFIG_FILE = "compute_target.json"


def read_target_settings(run_id: str) -> dict[str, Any]:
    path = run_dir(run_id) / TARGET_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class Supervisor:
    def __init__(
        self,
        store: AbstractStore,
        *,
        workspace: str,
        run_id: str,
        store_uri: str,
        principal: str,
        datastore: Callable[[], AbstractDatastore],
        snapshot_path: str | None = None,
        run_config: dict[str, Any] | None = None,
        poll_interval: float = 1.0,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.run_id = validate_name("run", run_id)
        self.store_uri = store_uri
        self.principal = principal
        self._datastore_factory = datastore
        self._datastore: AbstractDatastore | None = None
        self.snapshot_path = snapshot_path or run_file(run_id, "snapshot.zip")
        self.run_config = run_config
        self.poll_interval = poll_interval
        self.kill_grace = kill_grace
        # Set by SIGTERM (LocalComputeTarget.cancel) or a sweep parent's cancel; every wait polls it.
        self.stop = threading.Event()
        # True when ``stop`` was set because the supervisor itself failed (not a cancel).
        self.aborted = False

    # ------------------------------------------------------------------ entry
    def run(self) -> int:
        """Carry the run to a terminal status; the process exit code (0 when Completed)."""
        run_id = self.run_id
        record = self.store.get_run(run_id)
        if record.status.is_terminal:
            log.info("Run %s is already %s; nothing to do", run_id, record.status)
            return 0
        folder = run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with Heartbeat(self.store, run_id):  # until the run's end is recorded below
            return self._carry(run_id, record, folder)

    def _carry(self, run_id: str, record: RunRecord, folder: Path) -> int:
        batcher = LogBatcher(self.store, run_id)
        try:
            config = RunConfiguration.from_dict(
                self.run_config if self.run_config is not None else record.run_config,
                source=f"run configuration of run {run_id!r}",
            )
            self.check_cancel(run_id)
            self.activity(run_id, status=ActivityStatus.RUNNING, progress=PROGRESS_PREPARING, message="Preparing")
            self.store.update_run_status(run_id, RunStatus.PREPARING)
            zip_path = self.download_snapshot(folder, batcher)
            self.check_cancel(run_id)
            # The environment is built from the snapshot (its conda file), not the user's folder.
            work = self.extract(zip_path, run_id, batcher)
            self.activity(run_id, progress=PROGRESS_ENVIRONMENT, message="Preparing environment")
            control(batcher, f"Preparing Python environment ({config.environment.kind})")
            interpreter = self.prepare_environment(config, work, batcher)
            self.check_cancel(run_id)
            if config.sweep is not None:
                status = run_sweep(self, record, config, interpreter, zip_path, batcher)
            else:
                status = self.execute(run_id, config, interpreter, zip_path, batcher, work=work)
        except Interrupted:
            control(batcher, "Canceled before the script started")
            status = self.end(run_id, RunStatus.CANCELED, batcher=batcher)
        except BaseException as exc:
            log.exception("Supervisor of run %s failed", run_id)
            control(batcher, "Supervisor error:\n" + traceback.format_exc())
            if self.stop.is_set() and not self.aborted:  # e.g. uv killed by a cancel
                status = self.end(run_id, RunStatus.CANCELED, batcher=batcher)
            else:
                status = self.end(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                                  batcher=batcher)
        finally:
            batcher.close()
        return 0 if status is RunStatus.COMPLETED else 1

    def handle_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: raising from a signal handler could strike while a lock is held.
        log.info("Received signal %s: canceling run %s", signum, self.run_id)
        self.stop.set()

    # ------------------------------------------------------------------ steps
    @property
    def datastore(self) -> AbstractDatastore:
        if self._datastore is None:
            self._datastore = self._datastore_factory()
        return self._datastore

    def download_snapshot(self, folder: Path, batcher: LogBatcher) -> Path:
        control(batcher, f"Downloading snapshot {self.snapshot_path} from datastore {self.datastore.name!r}")
        zip_path = folder / "snapshot.zip"
        self.datastore.download_file(self.snapshot_path, zip_path, overwrite=True, show_progress=False)
        return zip_path

    def extract(self, zip_path: Path, run_id: str, batcher: LogBatcher) -> Path:
        """A fresh work folder for ``run_id`` holding the snapshot."""
        work = run_dir(run_id) / "work"
        if work.exists():  # a previous attempt's leftovers must not leak into this one
            shutil.rmtree(work)
        work.parent.mkdir(parents=True, exist_ok=True)
        control(batcher, f"Extracting snapshot into {work}")
        safe_extract(zip_path, work)
        return work

    def execute(
        self,
        run_id: str,
        config: RunConfiguration,
        interpreter: str,
        zip_path: Path,
        batcher: LogBatcher,
        *,
        parent_run_id: str | None = None,
        work: Path | None = None,
    ) -> RunStatus:
        """Run the script of ``run_id`` in a fresh work copy and finalize the run.

        ``work``: an already extracted, untouched work folder of this run (else one is extracted).
        """
        if work is None:
            work = self.extract(zip_path, run_id, batcher)
        driver_log = run_dir(run_id) / "driver_log.txt"
        with open(driver_log, "w", encoding="utf-8") as mirror:
            batcher.set_mirror(mirror)
            try:
                self.check_cancel(run_id)
                outcome = self.run_script(run_id, config, interpreter, work, batcher, parent_run_id=parent_run_id)
            except Interrupted:
                outcome = ScriptOutcome(exit_code=None, canceled=True)
            finally:
                batcher.flush()
                batcher.set_mirror(None)
        return self.finalize(run_id, config, outcome, work, driver_log, batcher)

    # The two steps another compute kind replaces (the docker target runs the script in a container).
    def prepare_environment(self, config: RunConfiguration, work: Path, batcher: LogBatcher) -> str:
        """What ``run_script`` runs the script with (here an interpreter), built when needed."""
        return prepare_python(config.environment, work, stop=self.stop,
                              log_fn=lambda line: batcher.line(CONTROL, line))

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
        """Run the script in ``work`` until it ends, is canceled or runs out of time; marks the run
        Running once the script starts. ``./outputs`` of ``work`` is what ``finalize`` uploads."""
        command = [interpreter, config.script, *config.arguments]
        env = build_script_env(
            os.environ,
            config.environment_variables,
            self.identity(run_id, parent_run_id),
            venv=Path(interpreter).parent.parent if config.environment.kind == "virtualenv" else None,
        )
        self.mark_running(run_id)
        control(batcher, "Starting script: " + " ".join([Path(interpreter).name, config.script, *config.arguments]))
        return ScriptRunner(
            self.store, run_id, command=command, cwd=work, env=env, batcher=batcher,
            stop_event=self.stop, max_duration=config.max_run_duration_seconds,
            poll_interval=self.poll_interval, kill_grace=self.kill_grace,
        ).run()

    def mark_running(self, run_id: str) -> None:
        self.store.update_run_status(run_id, RunStatus.RUNNING)
        self.activity(run_id, status=ActivityStatus.RUNNING, progress=PROGRESS_RUNNING, message="Running")

    def finalize(
        self,
        run_id: str,
        config: RunConfiguration,
        outcome: ScriptOutcome,
        work: Path,
        driver_log: Path,
        batcher: LogBatcher,
    ) -> RunStatus:
        control(batcher, _describe_exit(outcome))
        if not outcome.canceled:
            self.store.update_run_status(run_id, RunStatus.FINALIZING)
        self.activity(run_id, progress=PROGRESS_FINALIZING, message="Uploading outputs")
        upload_error = None
        try:
            outputs = work / OUTPUTS_DIR
            if outputs.is_dir() and any(p.is_file() for p in outputs.rglob("*")):
                control(batcher, f"Uploading {OUTPUTS_DIR}/ to {run_prefix(run_id)}/{OUTPUTS_DIR}")
                self.datastore.upload(outputs, run_file(run_id, OUTPUTS_DIR), overwrite=True,
                                      show_progress=False)
            self.datastore.upload_file(driver_log, run_file(run_id, "logs/driver_log.txt"), overwrite=True,
                                       show_progress=False)
        except Exception as exc:
            log.exception("Uploading outputs of run %s failed", run_id)
            upload_error = f"Uploading the outputs of run {run_id!r} failed: {type(exc).__name__}: {exc}"
        if outcome.canceled:
            return self.end(run_id, RunStatus.CANCELED, batcher=batcher)
        if outcome.timed_out:
            return self.end(run_id, RunStatus.FAILED, batcher=batcher, error=(
                f"Run {run_id!r} exceeded max_run_duration_seconds={config.max_run_duration_seconds:g} "
                "and was stopped"
            ))
        if outcome.exit_code != 0:
            error = f"Script {config.script!r} of run {run_id!r} {_exit_phrase(outcome.exit_code)}"
            if outcome.stderr_tail:
                error += "; last lines of stderr:\n" + "\n".join(outcome.stderr_tail[-_ERROR_TAIL_LINES:])
            return self.end(run_id, RunStatus.FAILED, error=error, batcher=batcher)
        if upload_error:
            return self.end(run_id, RunStatus.FAILED, error=upload_error, batcher=batcher)
        return self.end(run_id, RunStatus.COMPLETED, batcher=batcher)

    # ------------------------------------------------------------------ helpers
    def identity(self, run_id: str, parent_run_id: str | None = None) -> dict[str, str]:
        identity = {
            ENV_RUN_ID: run_id,
            ENV_WORKSPACE: self.workspace,
            ENV_STORE_URI: self.store_uri,
            ENV_PRINCIPAL: self.principal,
            ENV_HOME: str(aml_home()),
        }
        # A served workspace: the run token this supervisor was started with (it covers a sweep's
        # children too). build_script_env drops any inherited one before setting this.
        if run_token := os.environ.get(ENV_RUN_TOKEN):
            identity[ENV_RUN_TOKEN] = run_token
            # The mlflow client too: MLFLOW_TRACKING_URI etc. point it at this run on the service.
            identity.update(mlflow_environment(
                self.store_uri, workspace=self.workspace, experiment=self.store.get_run(run_id).experiment,
                run_id=run_id, run_token=run_token,
            ))
        if parent_run_id is not None:
            identity[ENV_PARENT_RUN_ID] = parent_run_id
        return identity

    def check_cancel(self, run_id: str) -> None:
        if self.stop.is_set() or self.store.get_run(run_id).cancel_requested:
            raise Interrupted()

    def end(
        self, run_id: str, status: RunStatus, *, error: str | None = None, batcher: LogBatcher | None = None
    ) -> RunStatus:
        """Set the terminal status (retrying: it is the one write that must not be lost)."""
        if batcher is not None:
            control(batcher, f"Run {status}" + (f": {error}" if error else ""))
            batcher.flush()
        for attempt in range(1, 6):
            try:
                self.store.update_run_status(run_id, status, error=error)
                break
            except Exception:
                if attempt == 5:
                    raise
                log.warning("Setting run %s to %s failed (attempt %d); retrying", run_id, status, attempt,
                            exc_info=True)
                time.sleep(attempt)
        self.activity(run_id, status=RUN_ACTIVITY_STATUS[status], progress=1.0, message=str(status), error=error)
        return status

    def activity(self, activity_id: str, **changes: Any) -> None:
        """Update an activity; a missing activity is not worth failing the run for."""
        try:
            self.store.update_activity(activity_id, **changes)
        except NotFoundError:
            log.debug("No activity %s to update", activity_id)
        except Exception:
            log.warning("Updating activity %s failed", activity_id, exc_info=True)


def _exit_phrase(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _describe_exit(outcome: ScriptOutcome) -> str:
    if outcome.canceled:
        return f"Script stopped: run canceled (after {outcome.duration:.1f}s)"
    if outcome.timed_out:
        return f"Script stopped: time limit reached (after {outcome.duration:.1f}s)"
    return f"Script {_exit_phrase(outcome.exit_code)} after {outcome.duration:.1f}s"


# ---------------------------------------------------------------------------------- main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}",
                                     description="Run one airflow-aml run on this machine.")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--workspace", default=os.environ.get(ENV_WORKSPACE))
    # The store URI may hold a password: the local target passes it in the environment, where
    # other users cannot read it (they can read command lines).
    parser.add_argument("--store-uri", default=os.environ.get(ENV_STORE_URI))
    parser.add_argument("--principal", default=None)
    parser.add_argument("--datastore", default=None, help="datastore holding the snapshot (default: workspace default)")
    parser.add_argument("--snapshot-path", default=None)
    parser.add_argument("--run-config-file", default=None, help="JSON run configuration (default: the run record's)")
    args = parser.parse_args(argv)
    if not args.workspace:
        parser.error(f"--workspace or ${ENV_WORKSPACE} is required")
    if not args.store_uri:
        parser.error(f"--store-uri or ${ENV_STORE_URI} is required")
    return args


def main(argv: list[str] | None = None, *, supervisor_class: type[Supervisor] | None = None) -> int:
    """``supervisor_class``: a subclass that runs the script elsewhere (the docker target's)."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter hides our lines
    principal = args.principal or os.environ.get(ENV_PRINCIPAL) or current_principal()

    store = get_store(args.store_uri)

    def open_datastore() -> AbstractDatastore:
        ctx = WorkspaceContext.open(args.workspace, store_uri=args.store_uri, principal=principal)
        return ctx.get_datastore(args.datastore) if args.datastore else ctx.get_default_datastore()

    run_config = None
    if args.run_config_file:
        run_config = json.loads(Path(args.run_config_file).read_text())
    supervisor = (supervisor_class or Supervisor)(
        store, workspace=args.workspace, run_id=args.run_id, store_uri=args.store_uri, principal=principal,
        datastore=open_datastore, snapshot_path=args.snapshot_path, run_config=run_config,
    )
    signal.signal(signal.SIGTERM, supervisor.handle_sigterm)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # detached: a closing terminal is not a cancel
    # LocalComputeTarget starts us with SIGTERM blocked; a cancel that came early is delivered now.
    # Unblocking also keeps the mask from being inherited by the scripts we start.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        return supervisor.run()
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
