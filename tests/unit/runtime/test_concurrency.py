"""Four processes log into one SQLite workspace at once: nothing lost, no lock errors."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from airflow_aml.workspace import Workspace

PROCESSES = 4
RUNS_PER_PROCESS = 3
VALUES_PER_RUN = 3000


def _worker(store_uri: str, home: str, worker: int, queue) -> None:
    os.environ["AML_HOME"] = home
    os.environ["AML_PRINCIPAL"] = "alice"
    try:
        ws = Workspace.get("ws", store_uri=store_uri)
        ids = []
        for r in range(RUNS_PER_PROCESS):
            run = ws.experiment("concurrent").start_logging(tags={"worker": str(worker)})
            for i in range(VALUES_PER_RUN):
                run.log("loss", float(i))
                if i % 500 == 0:
                    run.tag(f"progress{r}", str(i))
            run.complete()
            ids.append(run.id)
        queue.put(("ok", ids))
    except BaseException as exc:  # report, do not hang the parent
        queue.put(("error", repr(exc)))


def test_four_processes_log_into_one_sqlite_workspace(workspace: Workspace, aml_home: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(workspace.store_uri, str(aml_home), w, queue)) for w in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [detail for status, detail in results if status == "error"]
    assert errors == []
    run_ids = [run_id for _, ids in results for run_id in ids]
    assert len(run_ids) == PROCESSES * RUNS_PER_PROCESS
    for run_id in run_ids:
        metrics = workspace.store.get_metrics(run_id)
        assert len(metrics) == VALUES_PER_RUN
        assert [m.value for m in metrics] == [float(i) for i in range(VALUES_PER_RUN)]
        assert workspace.get_run(run_id).status.value == "Completed"
