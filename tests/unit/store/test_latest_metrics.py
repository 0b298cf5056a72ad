"""``latest_metrics``: kept by log_batch, filled by migration 0006 from existing metrics, and the
index a top-N search walks (SQLite's query plan says so)."""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import create_engine, event, text

from airflow_aml.entities import RunQuery, RunStatus
from airflow_aml.store.sql import SqlStore
from airflow_aml.store.sql.migrate import upgrade
from tests.unit.store.helpers import WS, new_workspace, scalar


def _latest(store: SqlStore, run_id: str) -> dict[str, float]:
    return store.get_latest_scalar_metrics([run_id])[run_id]


def test_log_batch_keeps_the_latest_value_per_name(store: SqlStore) -> None:
    new_workspace(store)
    run = store.create_run(workspace=WS, experiment="e", submitted_by="alice")
    store.log_batch(run.run_id, [scalar("acc", 0.5, 3, timestamp=1.0), scalar("loss", 2.0, 0)])
    store.log_batch(run.run_id, [scalar("acc", 0.1, 1)])  # an older step arriving late: ignored
    assert _latest(store, run.run_id) == {"acc": 0.5, "loss": 2.0}
    store.log_batch(run.run_id, [scalar("acc", 0.6, 3, timestamp=10.0), scalar("acc", 0.7, 3, timestamp=10.0)])
    assert _latest(store, run.run_id)["acc"] == 0.7  # a tie: the later write wins, as in the metric rows
    store.log_batch(run.run_id, [scalar("acc", 0.65, 3, timestamp=5.0)])  # same step, earlier time
    assert _latest(store, run.run_id)["acc"] == 0.7
    store.log_batch(run.run_id, [scalar("acc", math.nan, 4)])
    assert math.isnan(_latest(store, run.run_id)["acc"])
    found = store.search_runs(WS, RunQuery(order_by_metric="acc", max_results=5))
    assert [r.run_id for r in found] == [run.run_id]  # NaN sorts as no value: still listed, last


def _scalar_rows(uri: str) -> list[tuple]:
    engine = create_engine(uri)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT run_id, name, step, value FROM latest_metrics ORDER BY run_id, name")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_migration_0006_fills_the_table_from_existing_metrics(tmp_path: Path) -> None:
    """A 0005 database with metrics (written before the table existed) gets the same latest
    values log_batch would have kept: highest step, then latest time, then the last inserted."""
    uri = f"sqlite:///{tmp_path / 'aml.db'}"
    store = SqlStore(uri)
    new_workspace(store)
    a = store.create_run(workspace=WS, experiment="e", submitted_by="alice", status=RunStatus.RUNNING).run_id
    b = store.create_run(workspace=WS, experiment="e", submitted_by="alice").run_id
    store.log_batch(a, [scalar("acc", 0.2, 1), scalar("acc", 0.9, 2), scalar("acc", 0.3, 0)])
    store.log_batch(a, [scalar("loss", 1.0, 5, timestamp=1.0), scalar("loss", 0.5, 5, timestamp=1.0)])
    store.log_batch(b, [scalar("acc", 0.4, 0)])
    kept = _scalar_rows(uri)
    store.close()

    engine = create_engine(uri)
    with engine.begin() as conn:  # back to 0005: the table gone, the metrics still there
        conn.execute(text("DROP TABLE latest_metrics"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()
    assert upgrade(uri) == "0006"
    assert _scalar_rows(uri) == kept == sorted([(a, "acc", 2, 0.9), (a, "loss", 5, 0.5), (b, "acc", 0, 0.4)])


def test_top_n_by_a_metric_walks_the_rank_index(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'aml.db'}")
    new_workspace(store)
    for i in range(30):
        run = store.create_run(workspace=WS, experiment="e", submitted_by="alice")
        store.log_batch(run.run_id, [scalar("acc", i / 30, 0)])
    captured: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "latest_metrics" in statement and "JOIN" in statement:
            captured.append((statement, parameters))

    event.listen(store._engine, "before_cursor_execute", record)
    try:
        top = store.search_runs(WS, RunQuery(experiment="e", order_by_metric="acc", max_results=3))
    finally:
        event.remove(store._engine, "before_cursor_execute", record)
    assert [store.get_latest_scalar_metrics([r.run_id])[r.run_id]["acc"] for r in top] == [29 / 30, 28 / 30, 27 / 30]
    (statement, parameters), = captured
    with store._engine.connect() as conn:
        plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    store.close()
    # The scan walks the index in value order (no sort of every run by its value first).
    assert "ix_latest_metrics_rank" in plan, plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
