"""Process entry points for the multi-process tests (importable, as ``spawn`` needs)."""

from __future__ import annotations

import time
import traceback
from typing import Any

from airflow_aml.entities import Metric, RunStatus
from airflow_aml.store.sql import SqlStore

WS = "ws"
MODEL = "shared-model"


def open_store(uri: str, barrier: Any, results: Any) -> None:
    """Open (and so create the schema of) the same empty database as the other workers."""
    try:
        barrier.wait()
        SqlStore(uri).close()
        results.put(("ok", None))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def write_load(uri: str, worker: int, batches: int, barrier: Any, results: Any) -> None:
    """Metrics, runs and model versions, all at once with the other workers."""
    try:
        store = SqlStore(uri)
        main_run = store.create_run(workspace=WS, experiment="load", submitted_by=f"w{worker}").run_id
        store.update_run_status(main_run, RunStatus.RUNNING)
        versions: list[int] = []
        barrier.wait()
        started = time.monotonic()
        for i in range(batches):
            store.log_batch(main_run, [Metric(f"m{j}", float(i * 10 + j), i, float(i)) for j in range(10)])
            if i % 20 == 0:
                child = store.create_run(
                    workspace=WS, experiment="load", submitted_by=f"w{worker}", parent_run_id=main_run
                )
                store.update_run_status(child.run_id, RunStatus.RUNNING)
                store.update_run_status(child.run_id, RunStatus.COMPLETED)
            if i % 8 == 0:
                versions.append(
                    store.create_model_version(WS, MODEL, path=f"w{worker}/{i}", datastore="d", created_by="w").version
                )
        store.update_run_status(main_run, RunStatus.COMPLETED)
        elapsed = time.monotonic() - started
        store.close()
        results.put(("ok", {"run_id": main_run, "versions": versions, "seconds": elapsed}))
    except BaseException:
        results.put(("error", traceback.format_exc()))
