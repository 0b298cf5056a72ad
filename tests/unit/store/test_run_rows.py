"""run_rows: a search's records are built without RunRecord.__init__; they must be the records
get_run builds, field for field, on every store."""

from __future__ import annotations

import dataclasses

from airflow_aml.entities import RunQuery, RunRecord, RunStatus
from airflow_aml.store.sql import SqlStore
from airflow_aml.store.sql.run_rows import RECORD_COLUMNS, RECORD_FIELDS, _record
from airflow_aml.store.sql.tables import PARAM, PROPERTY, TAG
from tests.unit.store.helpers import WS, new_workspace, scalar


def test_the_fast_record_sets_every_field_of_run_record() -> None:
    row = tuple(f"v{i}" for i in range(len(RECORD_COLUMNS)))
    row = (*row[:4], RunStatus.RUNNING.value, *row[5:])
    record = _record(row, {TAG: {"t": "1"}, PROPERTY: {}, PARAM: {"p": "2"}})
    assert set(vars(record)) == RECORD_FIELDS == {field.name for field in dataclasses.fields(RunRecord)}
    assert record.status is RunStatus.RUNNING and record.tags == {"t": "1"} and record.params == {"p": "2"}
    assert dataclasses.replace(record) == record  # a real dataclass instance: replace() and == work


def test_searched_records_equal_the_records_get_run_reads(store: SqlStore) -> None:
    new_workspace(store)
    parent = store.create_run(workspace=WS, experiment="e", submitted_by="alice", status=RunStatus.RUNNING,
                              run_config={"script": "train.py", "nested": {"a": [1, 2]}}, display_name="parent",
                              tags={"team": "a"}, properties={"origin": "test"}, idempotency_key="k",
                              idempotency_attempt=1)
    child = store.create_run(workspace=WS, experiment="e", submitted_by="alice", parent_run_id=parent.run_id,
                             compute_target="local")
    store.log_params(parent.run_id, {"lr": "0.1", "seed": "3"})
    store.log_batch(parent.run_id, [scalar("acc", 0.9, 0)])
    store.log_batch(child.run_id, [scalar("acc", 0.4, 0)])
    store.update_run_status(child.run_id, RunStatus.FAILED, error="boom")
    store.request_cancel(parent.run_id)
    expected = {run_id: store.get_run(run_id) for run_id in (parent.run_id, child.run_id)}
    queries = [
        RunQuery(experiment="e"),
        RunQuery(experiment="e", order_by_metric="acc", max_results=5),  # the top-N path
        RunQuery(experiment="e", order_by_metric="acc"),
    ]
    for query in queries:
        found = store.search_runs(WS, query)
        assert [record.run_id for record in found] == (
            [child.run_id, parent.run_id] if query.order_by_metric is None else [parent.run_id, child.run_id]
        )
        for record in found:
            assert record == expected[record.run_id]
            assert type(record) is RunRecord
    # Each record owns its dicts: changing one search's result changes no other.
    first, second = store.search_runs(WS, RunQuery(experiment="e")), store.search_runs(WS, RunQuery(experiment="e"))
    first[1].tags["team"] = "changed"
    first[1].run_config["nested"]["a"].append(3)
    assert second[1].tags == {"team": "a"} and second[1].run_config["nested"] == {"a": [1, 2]}
