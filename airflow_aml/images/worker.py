"""The detached process that builds an image for ``Image.create(wait=False)``.

``start_build_process`` copies the application files into the build's own folder (so that
editing the source directory after ``create`` returns cannot change the image), writes the plan
and starts ``python -m airflow_aml.images.worker --plan-file <plan.json>`` in a new session: like
the local compute target's supervisor, it survives the caller (an Airflow task that defers, a
closed notebook). Its stdout/stderr go to ``worker.log`` beside the plan:
``$AML_HOME/images/builds/<workspace>/<name>/<version>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from airflow_aml.config import ENV_PRINCIPAL, ENV_STORE_URI, aml_home
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ActivityStatus, ImageStatus
from airflow_aml.exceptions import AmlError
from airflow_aml.images.build import execute_build
from airflow_aml.images.plan import BuildPlan
from airflow_aml.processes import alive_here, spawn_detached, this_host, worker_environment

log = logging.getLogger(__name__)

WORKER_MODULE = "airflow_aml.images.worker"
PROP_BUILD_PID = "aml.build_pid"
PROP_BUILD_HOST = "aml.build_host"
PROP_BUILD_PROCESS = "aml.build_process"  # "inline" (the creating process) or "worker"
PLAN_FILE = "plan.json"
WORKER_LOG = "worker.log"


def build_dir(workspace: str, name: str, version: int) -> Path:
    return aml_home() / "images" / "builds" / workspace / name / str(version)


def start_build_process(workspace: WorkspaceContext, plan: BuildPlan) -> int:
    """Stage the app files, start the worker; returns its pid. On failure the image is Failed."""
    store = workspace.store
    folder = build_dir(workspace.name, plan.name, plan.version)
    try:
        app = folder / "app"
        staged = []
        for rel, source in plan.app_files:
            target = app.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            staged.append((rel, str(target)))
        plan = replace(plan, app_files=tuple(staged))
        plan_file = folder / PLAN_FILE
        folder.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
        env = worker_environment(os.environ, store_uri=workspace.store_uri, principal=workspace.principal)
        proc = spawn_detached([sys.executable, "-m", WORKER_MODULE, "--plan-file", str(plan_file)],
                              cwd=folder, env=env, log_path=folder / WORKER_LOG)
    except OSError as exc:
        error = f"Could not start the build process of image '{plan.name}' version {plan.version}: {exc}"
        store.update_image(workspace.name, plan.name, plan.version, status=ImageStatus.FAILED, error=error)
        store.update_activity(plan.activity_id or "", status=ActivityStatus.FAILED, error=error)
        raise AmlError(error) from exc
    with contextlib.suppress(AmlError):  # the build goes on without it; only liveness checks need it
        store.update_image(
            workspace.name, plan.name, plan.version,
            properties={PROP_BUILD_PID: str(proc.pid), PROP_BUILD_HOST: this_host(), PROP_BUILD_PROCESS: "worker"},
        )
    log.info("Started image build process %s for %s (log: %s)", proc.pid, plan.image_id, folder / WORKER_LOG)
    return proc.pid


def build_process_alive(properties: Mapping[str, str]) -> bool | None:
    """Whether the process building an image still runs; None when that cannot be told here
    (another host, no pid recorded). A worker is recognised by its command line (pids get
    reused); an inline build is the process that called ``Image.create``."""
    markers = (WORKER_MODULE,) if properties.get(PROP_BUILD_PROCESS) == "worker" else ()
    return alive_here(properties.get(PROP_BUILD_PID), properties.get(PROP_BUILD_HOST), markers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=WORKER_MODULE, description="Build one image version (internal).")
    parser.add_argument("--plan-file", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan_file = Path(args.plan_file)
    plan = BuildPlan.from_dict(json.loads(plan_file.read_text()))
    workspace = WorkspaceContext.open(plan.workspace, store_uri=os.environ[ENV_STORE_URI],
                                      principal=os.environ[ENV_PRINCIPAL])
    try:
        record = execute_build(workspace, plan, echo=lambda line: print(line, flush=True))
    finally:
        shutil.rmtree(plan_file.parent / "app", ignore_errors=True)  # staged copies, in the bundle now
    return 0 if record.status is ImageStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
