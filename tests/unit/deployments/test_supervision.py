"""How a waiter judges a deployment's supervisor from the record, from any process or home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from airflow_aml.deployments import Deployment
from airflow_aml.deployments.paths import SUPERVISOR_MODULE
from airflow_aml.processes import this_host
from airflow_aml.workspace import Workspace


def _record(ws: Workspace, runtime: dict) -> Deployment:
    return Deployment(ws, ws.store.create_deployment("ws", "svc", target="local", image_id="img:1",
                                                     created_by="alice", config={}, runtime=runtime))


def _images(ws: Workspace) -> None:
    ws.store.create_image_version("ws", "img", builder="local", created_by="alice", model_ids=[], spec={})


def test_nothing_recorded_or_another_host_cannot_be_told(workspace: Workspace) -> None:
    _images(workspace)
    service = _record(workspace, {"port": 1})
    assert service.worker_check().alive() is None  # a create whose supervisor has not published yet
    workspace.store.update_deployment("ws", "svc", runtime={"supervisor": {"pid": 1, "host": "elsewhere"}})
    assert service.worker_check().alive() is None


def test_the_recorded_supervisor_is_judged_by_pid_module_and_folder(workspace: Workspace, tmp_path: Path) -> None:
    _images(workspace)
    service = _record(workspace, {"port": 1})
    # Started from another AML_HOME: the folder's last parts are what must match.
    folder = tmp_path / "other-home" / "deployments" / "ws" / "svc"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", SUPERVISOR_MODULE,
                             "--dir", str(folder)])
    try:
        workspace.store.update_deployment("ws", "svc", runtime={"supervisor": {"pid": proc.pid, "host": this_host()}})
        assert service.worker_check().alive() is True
        assert Deployment(workspace, workspace.store.get_deployment("ws", "svc")).supervision.recorded_alive(
            {"supervisor": {"pid": os.getpid(), "host": this_host()}}) is False  # a pid, but not a supervisor
    finally:
        proc.kill()
        proc.wait()
    assert service.worker_check().alive() is False
