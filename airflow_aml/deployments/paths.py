"""Where a deployment's local files live: ``$AML_HOME/deployments/<workspace>/<name>/``.

    desired.json          what the supervisor must run (written by the SDK, atomically)
    supervisor.pid        the supervisor's pid (also recorded on the deployment's runtime)
    config/scoring.json   the replicas' ScoringConfig (key hashes; re-read on change)
    logs/supervisor.log   the supervisor's own log
    logs/replica-<generation>-<n>.log   each replica's stdout/stderr
    telemetry/requests.jsonl            one line per request, written by the front
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from airflow_aml.config import aml_home

# How a running supervisor is recognised on its command line, and its pid file.
SUPERVISOR_MODULE = "airflow_aml.deployments.supervisor"
PID_FILE = "supervisor.pid"
DESIRED_FILE = "desired.json"
SCORING_CONFIG = "config/scoring.json"
SUPERVISOR_LOG = "logs/supervisor.log"
TELEMETRY_FILE = "telemetry/requests.jsonl"


def deployment_dir(workspace: str, name: str) -> Path:
    return aml_home() / "deployments" / workspace / name


def replica_log(folder: Path, generation: int, index: int) -> Path:
    return folder / "logs" / f"replica-{generation}-{index}.log"


def write_json_atomic(path: Path, doc: Any, *, mode: int = 0o644) -> None:
    """Write ``doc`` to ``path`` so that a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
