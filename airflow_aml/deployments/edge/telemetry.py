"""The module's telemetry into the workspace, as a web service's supervisor collects its front's.

The module's scoring server appends its request lines (``JsonlTelemetrySink``) to
``requests.jsonl`` in the host folder bound into the container. ``collect`` reads the lines after
the offset it recorded last (``.collected.json`` in that folder), writes them to the workspace's
default datastore at ``deployments/<name>/collected/<day>/<ns>.jsonl`` (where a web service's
samples go) and returns the running totals.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from airflow_aml.context import WorkspaceContext
from airflow_aml.deployments.edge.manifest import TELEMETRY_FILE
from airflow_aml.exceptions import ValidationError
from airflow_aml.roles import Action

STATE_FILE = ".collected.json"


def collect(ctx: WorkspaceContext, name: str, folder: str | Path) -> dict[str, Any]:
    ctx.require(Action.WRITE)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"Edge module {name!r}: no telemetry folder {str(folder)!r}")
    state_path = folder / STATE_FILE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {"file_offset": 0, "status_counts": {}}
    try:
        with (folder / TELEMETRY_FILE).open("rb") as handle:
            handle.seek(int(state["file_offset"]))
            data = handle.read()
    except OSError:
        data = b""
    end = data.rfind(b"\n") + 1  # a line being written is read at the next collection
    lines = [line for line in data[:end].splitlines() if line.strip()]
    totals = Counter(state.get("status_counts") or {})
    for line in lines:
        try:
            totals[str(json.loads(line).get("status"))] += 1
        except ValueError:
            continue
    path = None
    if lines:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        path = f"deployments/{name}/collected/{day}/{time.time_ns()}.jsonl"
        ctx.get_default_datastore().write_bytes(path, b"\n".join(lines) + b"\n")
    state = {"file_offset": int(state["file_offset"]) + end, "status_counts": dict(totals),
             "requests": sum(totals.values()), "last_path": path or state.get("last_path")}
    tmp = state_path.with_name(f".{STATE_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, state_path)
    return {**state, "new_lines": len(lines), "path": path}
