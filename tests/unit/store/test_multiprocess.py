"""Several processes writing to one SQLite file at once never fail with "database is locked"."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from airflow_aml.entities import RunQuery, RunStatus
from airflow_aml.store.sql import SqlStore, migrate
from tests.unit.store import workers
from tests.unit.store.helpers import new_workspace

PROCESSES = 4
BATCHES = 200  # of 10 metrics each, per process


def _run_all(target: Any, args_for: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(n), barrier, results)) for n in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert errors == [], "\n".join(errors)
    return [detail for _, detail in outcomes]


def test_processes_create_the_schema_of_an_empty_database_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    _run_all(workers.open_store, lambda n: (uri,))
    store = SqlStore(uri)
    with store._engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
    store.close()


def test_concurrent_writers(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'aml.db'}"
    store = SqlStore(uri)
    new_workspace(store, workers.WS)
    started = time.monotonic()
    outcomes = _run_all(workers.write_load, lambda n: (uri, n, BATCHES))
    elapsed = time.monotonic() - started

    for outcome in outcomes:
        metrics = store.get_metrics(outcome["run_id"])
        assert len(metrics) == BATCHES * 10  # every metric, exactly once
        assert store.get_run(outcome["run_id"]).status is RunStatus.COMPLETED
    versions = sorted(v for outcome in outcomes for v in outcome["versions"])
    per_process = len(range(0, BATCHES, 8))
    assert versions == list(range(1, PROCESSES * per_process + 1))  # no gaps, no duplicates
    stored = sorted(m.version for m in store.search_models(workers.WS, name=workers.MODEL))
    assert stored == versions
    children = store.search_runs(workers.WS, RunQuery(statuses=(RunStatus.COMPLETED,), top_level_only=False))
    assert len(children) == PROCESSES * (1 + len(range(0, BATCHES, 20)))
    store.close()
    writing = max(outcome["seconds"] for outcome in outcomes)
    print(f"\n{PROCESSES} processes x {BATCHES} batches: {writing:.1f}s writing, {elapsed:.1f}s with start-up")
