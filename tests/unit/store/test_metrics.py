"""Metrics and run logs of the SQL store."""

from __future__ import annotations

import math
import threading
import warnings

import pytest

from airflow_aml.entities import Metric, MetricKind, RunStatus
from airflow_aml.exceptions import InvalidMetricError, RunNotFoundError, ValidationError
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, dump_tables, new_workspace, refusal, same_float, scalar


@pytest.fixture
def run_id(store: SqlStore) -> str:
    new_workspace(store)
    return store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id


def test_log_batch_and_get_metrics_in_order(store: SqlStore, run_id: str) -> None:
    metrics = [
        scalar("loss", 0.5, 1, 10.0),
        scalar("acc", 0.8, 1, 11.0),
        scalar("loss", 0.9, 0, 9.0),
        scalar("acc", 0.7, 0, 8.0),
        Metric("table", None, 0, 12.0, kind=MetricKind.ROW, payload={"epoch": 0, "f1": 0.5, "nan": math.nan}),
        Metric("plot", None, 0, 13.0, kind=MetricKind.IMAGE, payload={"path": "outputs/plot.png"}),
    ]
    store.log_batch(run_id, metrics)
    got = store.get_metrics(run_id)
    assert [(m.name, m.step) for m in got] == [
        ("acc", 0),
        ("acc", 1),
        ("loss", 0),
        ("loss", 1),
        ("plot", 0),
        ("table", 0),
    ]
    assert got[0] == scalar("acc", 0.7, 0, 8.0)
    table = got[5]
    assert table.kind is MetricKind.ROW and table.value is None
    assert table.payload is not None and table.payload["f1"] == 0.5 and math.isnan(table.payload["nan"])
    assert got[4].payload == {"path": "outputs/plot.png"} and got[4].kind is MetricKind.IMAGE
    assert [m.name for m in store.get_metrics(run_id, names=["loss"])] == ["loss", "loss"]
    assert store.get_metrics(run_id, names=[]) == []


def test_special_float_values_roundtrip(store: SqlStore, run_id: str) -> None:
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1.7976931348623157e308, None]
    store.log_batch(run_id, [scalar("v", value, step) for step, value in enumerate(values)])
    got = [m.value for m in store.get_metrics(run_id)]
    expected = [math.nan if v is None else v for v in values]  # a None scalar is NaN (entities rule)
    assert len(got) == len(expected)
    for actual, wanted in zip(got, expected, strict=True):
        assert actual is not None and same_float(actual, wanted)


def test_same_step_keeps_every_value(store: SqlStore, run_id: str) -> None:
    store.log_batch(run_id, [scalar("x", 1.0, 0, 1.0), scalar("x", 2.0, 0, 2.0)])
    assert [m.value for m in store.get_metrics(run_id)] == [1.0, 2.0]


def test_log_batch_is_all_or_nothing(store: SqlStore, run_id: str) -> None:
    before = dump_tables(store)
    bad = Metric("bad", None, 1, 1.0, kind=MetricKind.ROW, payload={"x": object()})
    with pytest.raises(ValidationError, match=refusal(store, "Payload of metric 'bad'")):
        store.log_batch(run_id, [scalar("good", 1.0, 0), bad])
    assert dump_tables(store) == before


def test_terminal_run_still_accepts_metrics(store: SqlStore, run_id: str) -> None:
    store.update_run_status(run_id, RunStatus.COMPLETED)
    store.log_metric(run_id, scalar("late", 1.0, 0))
    assert [m.name for m in store.get_metrics(run_id)] == ["late"]


def test_get_latest_scalar_metrics(store: SqlStore, run_id: str) -> None:
    other = store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id
    empty = store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id
    store.log_batch(
        run_id,
        [
            scalar("acc", 0.9, 5, 1.0),  # highest step wins even with an older timestamp
            scalar("acc", 0.1, 4, 99.0),
            scalar("loss", 0.3, 2, 1.0),
            scalar("loss", 0.2, 2, 2.0),  # same step: the later timestamp wins
            scalar("gone", 1.0, 0),
            scalar("gone", math.nan, 1),  # the latest value NaN stays NaN
            Metric("table", None, 10, 1.0, kind=MetricKind.ROW, payload={"a": 1}),  # not scalar
        ],
    )
    store.log_batch(other, [scalar("acc", 0.5, 0)])
    with warnings.catch_warnings():
        # pytest ignores DeprecationWarning suite-wide; this read must not raise one (they reach task logs).
        warnings.simplefilter("error")
        latest = store.get_latest_scalar_metrics([run_id, other, empty])
    assert list(latest) == [run_id, other, empty]
    assert latest[run_id]["acc"] == 0.9 and latest[run_id]["loss"] == 0.2
    assert math.isnan(latest[run_id]["gone"])
    assert set(latest[run_id]) == {"acc", "loss", "gone"}
    assert latest[other] == {"acc": 0.5}
    assert latest[empty] == {}
    assert store.get_latest_scalar_metrics([]) == {}


def test_get_latest_metrics_keep_step_and_time(store: SqlStore, run_id: str) -> None:
    other = store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id
    store.log_batch(run_id, [scalar("loss", 0.3, 2, 1.0), scalar("loss", 0.2, 2, 2.0), scalar("acc", 0.9, 5, 1.0),
                             scalar("acc", 0.1, 4, 99.0), scalar("gone", math.nan, 1),
                             Metric("table", None, 10, 1.0, kind=MetricKind.ROW, payload={"a": 1})])
    store.log_batch(run_id, [scalar("loss", 0.1, 1, 50.0)])  # an older step logged later changes nothing
    latest = store.get_latest_metrics([run_id, other])
    assert list(latest) == [run_id, other] and latest[other] == []
    by_name = {metric.name: metric for metric in latest[run_id]}
    assert [metric.name for metric in latest[run_id]] == ["acc", "gone", "loss"]
    assert (by_name["loss"].value, by_name["loss"].step, by_name["loss"].timestamp) == (0.2, 2, 2.0)
    assert (by_name["acc"].value, by_name["acc"].step, by_name["acc"].timestamp) == (0.9, 5, 1.0)
    assert math.isnan(by_name["gone"].value) and by_name["gone"].kind is MetricKind.SCALAR
    assert store.get_latest_metrics([]) == {}
    with pytest.raises(RunNotFoundError):
        store.get_latest_metrics([run_id, "ghost"])


def test_many_metrics_in_one_batch(store: SqlStore, run_id: str) -> None:
    store.log_batch(run_id, [scalar(f"m{i % 7}", float(i), i) for i in range(5000)])
    assert len(store.get_metrics(run_id)) == 5000
    assert store.get_latest_scalar_metrics([run_id])[run_id]["m0"] == 4998.0


# ----------------------------------------------------------------- logs
def test_append_and_read_log(store: SqlStore, run_id: str) -> None:
    store.append_log(run_id, "stdout", "line 1\n")
    store.append_log(run_id, "stderr", "warning\n")
    store.append_log(run_id, "stdout", "line 2\n")
    chunks = store.read_log(run_id)
    assert [(c.seq, c.stream, c.text) for c in chunks] == [
        (1, "stdout", "line 1\n"),
        (2, "stderr", "warning\n"),
        (3, "stdout", "line 2\n"),
    ]
    assert all(c.timestamp > 0 for c in chunks)
    assert [c.seq for c in store.read_log(run_id, after_seq=1)] == [2, 3]
    assert store.read_log(run_id, after_seq=3) == []


def test_log_seqs_are_per_run(store: SqlStore, run_id: str) -> None:
    other = store.create_run(workspace=WS, experiment="exp", submitted_by="alice").run_id
    store.append_log(run_id, "stdout", "a")
    store.append_log(other, "stdout", "b")
    assert [c.seq for c in store.read_log(other)] == [1]


def test_concurrent_appends_get_distinct_increasing_seqs(store: SqlStore, run_id: str) -> None:
    errors: list[BaseException] = []

    def append(stream: str) -> None:
        try:
            for i in range(25):
                store.append_log(run_id, stream, f"{stream} {i}\n")
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(f"s{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    chunks = store.read_log(run_id)
    assert [c.seq for c in chunks] == list(range(1, 101))
    for stream in ("s0", "s1", "s2", "s3"):  # each writer's lines stay in its order
        assert [c.text for c in chunks if c.stream == stream] == [f"{stream} {i}\n" for i in range(25)]


def test_unknown_run(store: SqlStore) -> None:
    new_workspace(store)
    with pytest.raises(RunNotFoundError, match="Run 'ghost' not found"):
        store.log_metric("ghost", scalar("a", 1.0, 0))


def test_unstorable_values_are_invalid_metrics(store: SqlStore, run_id: str) -> None:
    before = dump_tables(store)
    with pytest.raises(InvalidMetricError, match=refusal(store, "Metric 'acc' cannot be stored")):
        store.log_batch(run_id, [scalar("ok", 1.0, 0), Metric("acc", "high", 0, 1.0)])  # type: ignore[arg-type]
    with pytest.raises(InvalidMetricError, match=refusal(store, "Metric 'kind'")):
        store.log_batch(run_id, [Metric("kind", 1.0, 0, 1.0, kind="histogram")])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=refusal(store, "Payload of metric 'mixed'")):
        store.log_batch(run_id, [Metric("mixed", None, 0, 1.0, kind=MetricKind.ROW, payload={1: "a", "b": 2})])
    assert dump_tables(store) == before
