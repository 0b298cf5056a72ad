"""A deployment's cold start does not import what its processes do not use.

The supervisor and each replica are new Python processes on every deploy: what their entry
modules import is paid before the first request can be served (issue 16: deploy to first 200 OK
in at most 3 s). The replica runs user code in an image without Airflow and must never load the
SQL store; neither process needs the SDK's workspace context, datastores or terminal progress.
Checked in a fresh interpreter, as the processes start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _loaded(module: str, watched: tuple[str, ...]) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, check=True)
    return list(json.loads(result.stdout))


def test_the_replica_entry_imports_no_store_no_airflow_no_sdk() -> None:
    watched = ("sqlalchemy", "airflow", "airflow_aml.store", "airflow_aml.context", "airflow_aml.runtime.run",
               "airflow_aml.datastores", "rich", "yaml", "aiohttp", "httpx")
    module = "airflow_aml.runtime.scoring.__main__, airflow_aml.runtime.scoring.app"
    assert _loaded(module, watched) == []


def test_the_supervisor_entry_imports_no_sdk_and_no_scoring_app() -> None:
    watched = ("airflow", "airflow_aml.deployments.deployment", "airflow_aml.context", "airflow_aml.datastores",
               "airflow_aml.deployments.remote", "rich", "fastapi", "docker")
    assert _loaded("airflow_aml.deployments.supervisor.__main__", watched) == []


def test_the_lazy_package_names_still_resolve() -> None:
    from airflow_aml.deployments import Deployment, DeploymentConfig
    from airflow_aml.runtime import OfflineRun, Run

    assert Deployment.__name__ == "Deployment" and DeploymentConfig.__name__ == "DeploymentConfig"
    assert Run.__name__ == "Run" and OfflineRun.__name__ == "OfflineRun"
