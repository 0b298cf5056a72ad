"""Adaptive batching: concurrent requests scored in one call, each with its own answer and error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from airflow_aml.runtime.scoring import ScoringConfig, create_app
from airflow_aml.runtime.scoring.batching import BatchingPool
from airflow_aml.runtime.scoring.builtin import OnnxScorer, SklearnScorer
from airflow_aml.runtime.scoring.errors import ScoringInputError
from tests.unit.runtime.scoring.conftest import ROW, BundleFactory
from tests.unit.runtime.scoring.test_app import _asgi_client
from tests.unit.runtime.scoring.test_builtin import _onnx_bundle

RNG = np.random.default_rng(7)
# A window wide enough that a burst of requests surely lands in few batches on a busy machine.
WIDE = 200.0


def _metric(text: str, name: str) -> int:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return int(line.split()[1])


def _rows(count: int) -> list[list[float]]:
    return np.round(RNG.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(count, 4)), 1).tolist()


async def _post_all(client: httpx.AsyncClient, bodies: list[bytes]) -> list[httpx.Response]:
    headers = {"content-type": "application/json"}
    return await asyncio.gather(*(client.post("/score", content=body, headers=headers) for body in bodies))


def _burst(app: Any, bodies: list[bytes]) -> tuple[list[httpx.Response], str]:
    async def scenario() -> tuple[list[httpx.Response], str]:
        async with _asgi_client(app) as client:
            responses = await _post_all(client, bodies)
            return responses, (await client.get("/metrics")).text

    return asyncio.run(scenario())


def test_a_burst_to_a_builtin_scorer_is_scored_in_few_calls_each_request_with_its_own_answer(
    make_bundle: BundleFactory, iris_model: Any
) -> None:
    config = ScoringConfig(auth_enabled=False, max_concurrent_requests=4, max_queued_requests=60,
                           max_batch_size=32, max_latency_ms=WIDE)
    app = create_app(make_bundle(builtin="sklearn"), config)
    inputs = [_rows(1 + i % 3) for i in range(64)]  # 1 to 3 rows each: the split must follow them
    responses, metrics = _burst(app, [json.dumps({"data": rows}).encode() for rows in inputs])
    assert app.state.scoring.batching
    for rows, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["predictions"] == iris_model.predict(np.array(rows)).tolist()
        assert np.allclose(body["probabilities"], iris_model.predict_proba(np.array(rows)))
    batches = _metric(metrics, "aml_scoring_batches_total")
    assert _metric(metrics, "aml_scoring_batched_requests_total") == 64
    assert 2 <= batches <= 8  # at most 32 a call; the 200 ms window gathered the burst


def test_one_bad_input_fails_only_itself(make_bundle: BundleFactory, iris_model: Any) -> None:
    config = ScoringConfig(auth_enabled=False, max_queued_requests=30, max_latency_ms=WIDE)
    app = create_app(make_bundle(builtin="sklearn"), config)
    good = [json.dumps({"data": [ROW]}).encode()] * 10
    bodies = [*good[:5], b'{"data": [[1, 2]]}', b'{"data": [[1, 2, 3, 4]', *good[5:]]
    responses, metrics = _burst(app, bodies)
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * 5 + [400, 400] + [200] * 5
    assert "4 features" in responses[5].json()["error"] and responses[6].json()["type"] == "MalformedJson"
    assert all(response.json()["predictions"] == [0] for response in responses if response.status_code == 200)
    assert _metric(metrics, "aml_scoring_batches_total") < len(bodies)


SCORE_BATCH_PY = """
import json
from pathlib import Path

calls = Path(__file__).parent / "calls.jsonl"  # run_batch runs in the server's working directory


def init():
    calls.write_text("")


def _answer(body):
    if body.get("crash"):
        raise ValueError("boom")
    return {"echo": body["x"]}


def run(raw_data):
    with calls.open("a") as handle:
        handle.write(json.dumps({"run": 1}) + "\\n")
    return _answer(json.loads(raw_data))


def run_batch(raw_list):
    with calls.open("a") as handle:
        handle.write(json.dumps({"batch": len(raw_list)}) + "\\n")
    return [_answer(json.loads(raw)) for raw in raw_list]
"""


def test_a_script_with_run_batch_gets_lists_and_a_failing_batch_is_retried_one_by_one(
    make_bundle: BundleFactory,
) -> None:
    bundle = make_bundle(script=SCORE_BATCH_PY)
    config = ScoringConfig(auth_enabled=False, max_queued_requests=30, max_latency_ms=WIDE)
    app = create_app(bundle, config)
    bodies = [json.dumps({"x": i}).encode() for i in range(12)]
    responses, _ = _burst(app, bodies)
    assert [response.json() for response in responses] == [{"echo": i} for i in range(12)]
    calls = [json.loads(line) for line in (bundle / "app/calls.jsonl").read_text().splitlines()]
    # Every request answered once; a request that arrives alone (a loaded machine spreads the
    # burst out) may go to run() instead of a batch of one, but some were batched together.
    assert sum(call.get("batch", 0) + call.get("run", 0) for call in calls) == 12
    assert any(call.get("batch", 0) > 1 for call in calls) and len(calls) < 12

    app = create_app(bundle, config)
    bodies = [json.dumps(body).encode() for body in ({"x": 1}, {"x": 2, "crash": True}, {"x": 3})]
    responses, _ = _burst(app, bodies)
    assert [response.status_code for response in responses] == [200, 500, 200]
    assert responses[0].json() == {"echo": 1} and responses[1].json()["error"] == "boom"
    calls = [json.loads(line) for line in (bundle / "app/calls.jsonl").read_text().splitlines()]
    assert calls[0] == {"batch": 3} and calls[1:] == [{"run": 1}] * 3  # the batch failed: one at a time


def test_without_run_batch_or_with_max_batch_size_1_requests_are_not_batched(
    make_bundle: BundleFactory,
) -> None:
    from tests.unit.runtime.scoring.conftest import SCORE_PY

    for bundle, config in (
        (make_bundle(script=SCORE_PY), ScoringConfig(auth_enabled=False)),
        (make_bundle(builtin="sklearn"), ScoringConfig(auth_enabled=False, max_batch_size=1)),
    ):
        app = create_app(bundle, config)
        responses, metrics = _burst(app, [json.dumps({"data": [ROW]}).encode()] * 4)
        assert {response.status_code for response in responses} == {200}
        assert not app.state.scoring.batching and _metric(metrics, "aml_scoring_batches_total") == 0


def test_builtin_run_batch_answers_what_run_does(make_bundle: BundleFactory, iris_model: Any) -> None:
    sklearn = SklearnScorer(make_bundle(builtin="sklearn") / "models/iris/1")
    onnx = OnnxScorer(_onnx_bundle(make_bundle, iris_model) / "models/iris/1")
    items = [("", {"data": rows}) for rows in (_rows(1), _rows(3), _rows(2))]
    for scorer in (sklearn, onnx):
        scorer.init()
        batch = scorer.run_batch(items)
        singles = [scorer.run(raw, payload) for raw, payload in items]
        assert [answer["predictions"] for answer in batch] == [answer["predictions"] for answer in singles]
        for answer, single in zip(batch, singles, strict=True):
            assert np.allclose(answer["probabilities"], single["probabilities"], atol=1e-6)
        with pytest.raises(ScoringInputError, match="4 features"):
            scorer.run_batch([*items, ("", {"data": [[1.0, 2.0]]})])


# ---------------------------------------------------------------------------------------- the pool
def _blocked_pool(sizes: list[int], gate: threading.Event, **kwargs: Any) -> BatchingPool:
    def score(bodies: list[bytes]) -> list[Any]:
        sizes.append(len(bodies))
        gate.wait(5)
        return [ValueError(body.decode()) if body == b"bad" else body.upper() for body in bodies]

    return BatchingPool(1, "test", score, **kwargs)


def test_the_requests_waiting_behind_a_busy_worker_form_the_next_batch() -> None:
    sizes: list[int] = []
    gate = threading.Event()
    pool = _blocked_pool(sizes, gate, max_batch_size=4)
    try:
        first = pool.submit(b"a")
        deadline = time.monotonic() + 5
        while not sizes:  # the worker holds "a" alone: nothing else was waiting
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rest = [pool.submit(body) for body in (b"b", b"bad", b"c", b"d", b"e")]
        rest[3].cancel()  # its request timed out while waiting: dropped from the batch
        gate.set()
        assert first.result(5) == b"A"
        assert [rest[i].result(5) for i in (0, 2, 4)] == [b"B", b"C", b"E"]
        with pytest.raises(ValueError, match="bad"):
            rest[1].result(5)
        # "b", "bad", "c" and the cancelled "d" were taken (4 at most), "d" not scored; then "e".
        assert sizes == [1, 3, 1]
    finally:
        gate.set()
        pool.shutdown()


def test_a_batch_handler_that_breaks_its_contract_fails_each_request() -> None:
    pool = BatchingPool(1, "test", lambda bodies: [b"only one"], max_batch_size=8, max_latency=0.2)
    try:
        futures = [pool.submit(b"x"), pool.submit(b"y")]
        for future in futures:
            with pytest.raises(RuntimeError, match="1 outcomes for 2 requests"):
                future.result(5)
    finally:
        pool.shutdown()


def test_shutdown_ends_the_workers_after_what_was_queued() -> None:
    pool = BatchingPool(2, "test", lambda bodies: list(bodies), max_batch_size=8)
    futures = [pool.submit(str(i).encode()) for i in range(5)]
    pool.shutdown()
    assert [future.result(5) for future in futures] == [str(i).encode() for i in range(5)]
    for thread in pool._threads:
        thread.join(5)
        assert not thread.is_alive()


def test_an_idle_pool_scores_a_lone_request_without_waiting_for_company() -> None:
    pool = BatchingPool(1, "test", lambda bodies: list(bodies), max_batch_size=32)
    try:
        started = time.perf_counter()
        assert pool.submit(b"alone").result(5) == b"alone"
        assert time.perf_counter() - started < 0.5  # no batch window by default (max_latency 0)
    finally:
        pool.shutdown()
