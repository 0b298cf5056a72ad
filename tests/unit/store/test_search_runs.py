"""search_runs: every RunQuery field, evaluated in SQL."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import event

from airflow_aml.entities import MetricCondition, RunQuery, RunStatus
from airflow_aml.exceptions import ValidationError, WorkspaceNotFoundError
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, new_workspace, scalar, sql_only


@pytest.fixture
def runs(store: SqlStore) -> SqlStore:
    """Runs r1..r6 created in that order (so newest first is r6..r1).

    r1 exp-a Completed  tags team=a,size=s   acc latest 0.9 (step 2; step 1 was 0.1)
    r2 exp-a Failed     tags team=a           acc latest 0.5
    r3 exp-b Running    tags team=b           no acc; loss 3
    r4 exp-a Queued     child of r1           acc latest NaN
    r5 exp-b Completed  child of r1, team=a   acc latest 0.7 (same step twice: the later timestamp wins)
    r6 exp-a Completed  in workspace ws, nothing else
    """
    new_workspace(store)
    new_workspace(store, "other")

    def make(run_id: str, experiment: str, status: RunStatus, **kwargs: object) -> None:
        store.create_run(
            workspace=WS, experiment=experiment, submitted_by="alice", run_id=run_id, status=status, **kwargs
        )  # type: ignore[arg-type]

    make("r1", "exp-a", RunStatus.COMPLETED, tags={"team": "a", "size": "s"})
    make("r2", "exp-a", RunStatus.FAILED, tags={"team": "a"})
    make("r3", "exp-b", RunStatus.RUNNING, tags={"team": "b"})
    make("r4", "exp-a", RunStatus.QUEUED, parent_run_id="r1")
    make("r5", "exp-b", RunStatus.COMPLETED, parent_run_id="r1", tags={"team": "a"})
    make("r6", "exp-a", RunStatus.COMPLETED)
    store.create_run(workspace="other", experiment="exp-a", submitted_by="bob", run_id="x1", tags={"team": "a"})

    store.log_batch("r1", [scalar("acc", 0.1, 1), scalar("acc", 0.9, 2), scalar("acc", 0.2, 0)])
    store.log_batch("r2", [scalar("acc", 0.5, 0)])
    store.log_batch("r3", [scalar("loss", 3.0, 0)])
    store.log_batch("r4", [scalar("acc", 0.99, 0), scalar("acc", math.nan, 1)])
    store.log_batch("r5", [scalar("acc", 0.1, 3, timestamp=100.0), scalar("acc", 0.7, 3, timestamp=200.0)])
    store.log_batch("x1", [scalar("acc", 1.0, 0)])
    return store


def _ids(store: SqlStore, **query: object) -> list[str]:
    return [run.run_id for run in store.search_runs(WS, RunQuery(**query))]  # type: ignore[arg-type]


def test_default_is_newest_first(runs: SqlStore) -> None:
    assert _ids(runs) == ["r6", "r5", "r4", "r3", "r2", "r1"]


def test_filters(runs: SqlStore) -> None:
    assert _ids(runs, experiment="exp-b") == ["r5", "r3"]
    assert _ids(runs, experiment="unknown") == []
    assert _ids(runs, statuses=(RunStatus.COMPLETED, RunStatus.FAILED)) == ["r6", "r5", "r2", "r1"]
    assert _ids(runs, tags={"team": "a"}) == ["r5", "r2", "r1"]
    assert _ids(runs, tags={"team": "a", "size": "s"}) == ["r1"]  # every tag must match
    assert _ids(runs, tags={"team": "c"}) == []
    assert _ids(runs, parent_run_id="r1") == ["r5", "r4"]
    assert _ids(runs, top_level_only=True) == ["r6", "r3", "r2", "r1"]
    assert _ids(runs, experiment="exp-a", statuses=(RunStatus.COMPLETED,), top_level_only=True) == ["r6", "r1"]


def test_search_returns_full_records(runs: SqlStore) -> None:
    (r1,) = runs.search_runs(WS, RunQuery(tags={"size": "s"}))
    assert r1 == runs.get_run("r1")
    assert r1.tags == {"team": "a", "size": "s"}


def test_metric_conditions_use_the_latest_value(runs: SqlStore) -> None:
    assert _ids(runs, metric_conditions=(MetricCondition("acc", ">=", 0.7),)) == ["r5", "r1"]
    assert _ids(runs, metric_conditions=(MetricCondition("acc", "<", 0.2),)) == []  # r1's 0.1 is not latest
    assert _ids(runs, metric_conditions=(MetricCondition("acc", "==", 0.5),)) == ["r2"]
    # runs without the metric, or whose latest value is NaN, match no condition
    assert _ids(runs, metric_conditions=(MetricCondition("acc", "!=", 0.5),)) == ["r5", "r1"]
    both = (MetricCondition("acc", ">", 0.4), MetricCondition("acc", "<=", 0.7))
    assert _ids(runs, metric_conditions=both) == ["r5", "r2"]
    assert _ids(runs, metric_conditions=(MetricCondition("loss", ">", 1),)) == ["r3"]


def test_unknown_operator_is_a_validation_error(runs: SqlStore) -> None:
    with pytest.raises(ValidationError, match="Unknown operator '=~'"):
        _ids(runs, metric_conditions=(MetricCondition("acc", "=~", 1),))


def test_order_by_metric(runs: SqlStore) -> None:
    # r4 (latest NaN), r3 and r6 (no acc) come last in newest-first order, both directions
    assert _ids(runs, order_by_metric="acc") == ["r1", "r5", "r2", "r6", "r4", "r3"]
    assert _ids(runs, order_by_metric="acc", descending=False) == ["r2", "r5", "r1", "r6", "r4", "r3"]
    assert _ids(runs, order_by_metric="acc", max_results=2) == ["r1", "r5"]
    assert _ids(runs, order_by_metric="acc", tags={"team": "a"}, descending=False) == ["r2", "r5", "r1"]


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("scope", [{}, {"experiment": "exp-a"}, {"tags": {"team": "a"}}, {"top_level_only": True}])
def test_top_n_by_metric_is_a_prefix_of_the_full_order(runs: SqlStore, descending: bool, scope: dict) -> None:
    """A top-N (two index-ordered reads: runs with a value, then those without) returns exactly
    the first N of the full ordering, whichever side of the boundary N falls on."""
    full = _ids(runs, order_by_metric="acc", descending=descending, **scope)
    for limit in range(len(full) + 2):
        assert _ids(runs, order_by_metric="acc", descending=descending, max_results=limit, **scope) == full[:limit]


def test_max_results(runs: SqlStore) -> None:
    assert _ids(runs, max_results=3) == ["r6", "r5", "r4"]
    assert _ids(runs, max_results=0) == []
    with pytest.raises(ValidationError, match="max_results"):
        _ids(runs, max_results=-1)


def test_unknown_workspace(runs: SqlStore) -> None:
    with pytest.raises(WorkspaceNotFoundError):
        runs.search_runs("nope", RunQuery())


@sql_only  # reads SQL statements
def test_search_reads_latest_values_not_metric_series(runs: SqlStore) -> None:
    """Filters and orderings read latest_metrics (one row per run and name), never the metrics."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(runs._engine, "before_cursor_execute", record)
    try:
        _ids(runs, order_by_metric="acc", metric_conditions=(MetricCondition("acc", ">", 0),), max_results=1)
        _ids(runs, order_by_metric="acc", metric_conditions=(MetricCondition("acc", ">", 0),))
        runs.get_latest_scalar_metrics(["r1", "r2"])
    finally:
        event.remove(runs._engine, "before_cursor_execute", record)
    assert any("latest_metrics" in s for s in statements)
    assert not any("FROM metrics" in s or "JOIN metrics" in s for s in statements)


def _selects_of_search(store: SqlStore, query: RunQuery) -> list[str]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(store._engine, "before_cursor_execute", record)
    try:
        store.search_runs(WS, query)
    finally:
        event.remove(store._engine, "before_cursor_execute", record)
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


@sql_only  # counts SQL statements
def test_search_statements_do_not_grow_with_the_runs_returned(store: SqlStore) -> None:
    """No N+1: the runs come in one query and their tags/properties/params in one more per
    chunk of ids, whether the search returns 3 runs or 60 (each with tags and params)."""
    new_workspace(store)
    counts: list[int] = []
    created = 0
    for total in (3, 60):
        for i in range(created, total):
            run = store.create_run(
                workspace=WS, experiment="grow", submitted_by="alice", tags={"team": "a"}, status=RunStatus.RUNNING
            )
            store.log_params(run.run_id, {"lr": str(i)})
            store.log_batch(run.run_id, [scalar("acc", i / 100, 0)])
        created = total
        query = RunQuery(experiment="grow", metric_conditions=(MetricCondition("acc", ">=", 0),))
        assert len(store.search_runs(WS, query)) == total
        counts.append(len(_selects_of_search(store, query)))
    assert counts[0] == counts[1] <= 3  # workspace check, runs, attributes


@pytest.mark.parametrize("descending", [True, False])
def test_offset_pages_follow_the_full_order(runs: SqlStore, descending: bool) -> None:
    """Pages read with offset/max_results, across the ranked runs into those without the metric,
    join up to exactly the unpaged order (both search paths: top-N by metric and plain)."""
    for order in ("acc", None):
        whole = _ids(runs, order_by_metric=order, descending=descending)
        for size in (1, 2, 4):
            paged = [
                run_id
                for offset in range(0, len(whole) + size, size)
                for run_id in _ids(runs, order_by_metric=order, descending=descending, offset=offset, max_results=size)
            ]
            assert paged == whole, (order, size)
    assert _ids(runs, offset=4) == ["r2", "r1"]


def test_negative_offset_is_refused(runs: SqlStore) -> None:
    with pytest.raises(ValidationError, match="offset"):
        _ids(runs, offset=-1)


def test_count_child_runs_counts_each_parent_in_one_query(runs: SqlStore) -> None:
    """r1 has two children (r4, r5); the others none; an unknown id counts 0."""
    assert runs.count_child_runs(WS, ["r1", "r2", "r4", "r1", "nope"]) == {"r1": 2, "r2": 0, "r4": 0, "nope": 0}
    assert runs.count_child_runs(WS, []) == {}
    runs.create_run(workspace=WS, experiment="exp-a", submitted_by="alice", run_id="r7", parent_run_id="r5")
    assert runs.count_child_runs(WS, ["r1", "r5"]) == {"r1": 2, "r5": 1}  # children, not descendants


def test_count_child_runs_sees_only_its_workspace(runs: SqlStore) -> None:
    runs.create_run(workspace="other", experiment="e", submitted_by="alice", run_id="o1")
    runs.create_run(workspace="other", experiment="e", submitted_by="alice", run_id="o2", parent_run_id="o1")
    assert runs.count_child_runs(WS, ["o1"]) == {"o1": 0}
    assert runs.count_child_runs("other", ["o1"]) == {"o1": 1}
    with pytest.raises(WorkspaceNotFoundError):
        runs.count_child_runs("missing", ["r1"])


@sql_only
def test_count_child_runs_is_one_statement_for_a_page(runs: SqlStore) -> None:
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731  (before_cursor_execute's statement)
    event.listen(runs._engine, "before_cursor_execute", listener)
    try:
        runs.count_child_runs(WS, [f"r{i}" for i in range(1, 7)])
    finally:
        event.remove(runs._engine, "before_cursor_execute", listener)
    counting = [s for s in statements if "count(" in s.lower()]
    assert len(counting) == 1 and "GROUP BY" in counting[0].upper()


def test_properties_filter_on_exact_values_and_not_on_tags(store: SqlStore) -> None:
    """What the task-page views search by: the Airflow task instance recorded as properties."""
    new_workspace(store)
    marks = {"airflow.dag_id": "train", "airflow.run_id": "manual__1", "airflow.map_index": "-1"}
    store.create_run(workspace=WS, experiment="e", submitted_by="alice", run_id="p1", properties=marks)
    store.create_run(workspace=WS, experiment="e", submitted_by="alice", run_id="p2",
                     properties={**marks, "airflow.run_id": "manual__2"})
    store.create_run(workspace=WS, experiment="e", submitted_by="alice", run_id="t1", tags=marks)
    assert _ids(store, properties={"airflow.dag_id": "train"}) == ["p2", "p1"]
    assert _ids(store, properties={"airflow.dag_id": "train", "airflow.run_id": "manual__1"}) == ["p1"]
    assert _ids(store, properties={"airflow.dag_id": "other"}) == []
    assert _ids(store, tags={"airflow.dag_id": "train"}) == ["t1"]
