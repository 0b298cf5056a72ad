"""The scoring app in process: TestClient for most, httpx's ASGI transport for concurrent bursts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from airflow_aml.runtime.scoring import ScoringConfig, create_app, generate_key, hash_key
from tests.unit.runtime.scoring.conftest import ROW, SCORE_PY, BundleFactory

Serve = Callable[..., TestClient]


# ---------------------------------------------------------------------------------------- scoring
def test_script_scores_and_runs_in_app_dir(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    response = client.post("/score", json={"data": [ROW, [6.7, 3.0, 5.2, 2.3]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": ["setosa", "virginica"]}  # labels.json read from app/
    assert response.headers["content-type"] == "application/json"


def test_builtin_sklearn_gives_predictions_and_probabilities(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(builtin="sklearn"))
    body = client.post("/score", json={"data": [ROW]}).json()
    assert body["predictions"] == [0]
    assert len(body["probabilities"][0]) == 3 and abs(sum(body["probabilities"][0]) - 1) < 1e-9


def test_malformed_json_is_400_with_the_position(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    response = client.post("/score", content=b'{"data": [1, 2,]}', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["type"] == "MalformedJson"
    assert re.search(r"Expecting value at line 1 column 16 \(char 15\)", response.json()["error"])


_NOT_JSON_NUMBERS = [
    (b'{"data": [[NaN, 3.5, 1.4, 0.2]]}', "MalformedJson", "NaN is not a JSON number"),
    (b'{"data": [[Infinity, 3.5, 1.4, 0.2]]}', "MalformedJson", "Infinity is not a JSON number"),
    (b'{"data": [[-Infinity, 3.5, 1.4, 0.2]]}', "MalformedJson", "-Infinity is not a JSON number"),
    (b'{"data": [[1e400, 3.5, 1.4, 0.2]]}', "InvalidInput", "1e400 is out of the range of a 64-bit float"),
    (b'{"data": [[' + b"7" * 5000 + b', 3.5, 1.4, 0.2]]}', "InvalidInput", "an integer has more than 4300 digits"),
]


@pytest.mark.parametrize("scorer", ["script", "sklearn"])
def test_numbers_json_cannot_carry_are_400_with_the_reason(
    make_bundle: BundleFactory, serve: Serve, scorer: str
) -> None:
    """Python's parser takes NaN/Infinity, makes 1e400 infinite and raises a bare ValueError for a
    5,000-digit integer: each used to reach the model (500) or escape the handler (text/plain 500,
    uncounted). They are the client's input: 400, JSON, counted by status."""
    bundle = make_bundle(script=SCORE_PY) if scorer == "script" else make_bundle(builtin="sklearn")
    client = serve(bundle)
    for content, kind, message in _NOT_JSON_NUMBERS:
        response = client.post("/score", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400, (content[:40], response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["type"] == kind and message in response.json()["error"], response.json()
    assert client.post("/score", json={"data": [[1e300, 3.5, 1.4, 0.2]]}).status_code == 200  # large but finite
    text = client.get("/metrics").text
    assert f'aml_scoring_requests_total{{code="400"}} {len(_NOT_JSON_NUMBERS)}' in text
    assert "aml_scoring_errors_total{" not in text  # the client's fault: no server-side error counted


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": [ROW]}, r'\{"data": \[\[feature'),
        ({"data": ROW}, r"got 1-D \(for one row, send \[\[\.\.\.\]\]\)"),
        ({"data": [ROW, [1.0, 2.0]]}, "rows of equal length"),
        ({"data": [["a", "b", "c", "d"]]}, "only numbers"),
        ({"data": [[1.0, 2.0]]}, "Each row must have 4 features, got 2"),
        ({"data": []}, "empty"),
    ],
)
def test_builtin_sklearn_refuses_wrong_shapes_with_400(
    make_bundle: BundleFactory, serve: Serve, body: dict[str, Any], message: str
) -> None:
    client = serve(make_bundle(builtin="sklearn"))
    response = client.post("/score", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "InvalidInput"
    assert re.search(message, response.json()["error"]), response.json()


def test_a_crashing_run_is_500_and_the_service_keeps_serving(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    response = client.post("/score", json={"data": [ROW], "crash": True})
    assert response.status_code == 500
    assert response.json() == {"error": "boom", "type": "ValueError"}
    assert client.post("/score", json={"data": [ROW]}).status_code == 200


def test_numpy_results_are_sent_and_unencodable_ones_are_500(make_bundle: BundleFactory, serve: Serve) -> None:
    script = "import numpy as np\ndef run(raw):\n    return np.arange(3) if raw == '1' else {'x': object()}\n"
    client = serve(make_bundle(script=script))
    assert client.post("/score", json=1).json() == [0, 1, 2]
    response = client.post("/score", json=2)
    assert response.status_code == 500 and response.json()["type"] == "SerializationError"


# ---------------------------------------------------------------------------------------- readiness
def test_init_failure_makes_ready_503_while_health_stays_200(make_bundle: BundleFactory, serve: Serve) -> None:
    failing = "def init():\n    raise RuntimeError('no model')\n\ndef run(raw):\n    return 1\n"
    client = serve(make_bundle(script=failing))
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "failed", "error": "RuntimeError: no model"}
    score = client.post("/score", json={})
    assert score.status_code == 503 and "no model" in score.json()["error"]


def test_ready_is_200_after_init(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    assert client.get("/ready").json() == {"status": "ready"}


def test_ready_is_503_while_init_runs(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(script="import time\ndef init():\n    time.sleep(1)\n\ndef run(raw):\n    return 1\n")
    app = create_app(bundle, ScoringConfig(auth_enabled=False))
    with TestClient(app) as client:
        assert client.get("/ready").json() == {"status": "initializing"}
        assert client.get("/health").status_code == 200  # liveness does not wait for init()
        assert app.state.scoring.wait_initialized(10)
        assert client.get("/ready").status_code == 200


# ---------------------------------------------------------------------------------------- keys
def _config_file(path: Path, primary: str, secondary: str, **fields: Any) -> Path:
    path.write_text(json.dumps({"primary_key_hash": hash_key(primary), "secondary_key_hash": hash_key(secondary),
                                **fields}))
    return path


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_primary_and_secondary_keys_work_and_others_are_401(
    make_bundle: BundleFactory, serve: Serve, tmp_path: Path
) -> None:
    primary, secondary = generate_key(), generate_key()
    client = serve(make_bundle(script=SCORE_PY), config_path=_config_file(tmp_path / "c.json", primary, secondary))
    for key in (primary, secondary):
        assert client.post("/score", json={"data": [ROW]}, headers=_bearer(key)).status_code == 200
    for headers in ({}, _bearer("wrong"), {"Authorization": primary}, {"Authorization": "Basic abc"}):
        response = client.post("/score", json={"data": [ROW]}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=_bearer(secondary)).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def test_rotating_a_key_revokes_the_old_one_within_a_second(
    make_bundle: BundleFactory, serve: Serve, tmp_path: Path
) -> None:
    old, secondary, new = generate_key(), generate_key(), generate_key()
    config = _config_file(tmp_path / "c.json", old, secondary)
    client = serve(make_bundle(script=SCORE_PY), config_path=config)
    assert client.post("/score", json={"data": [ROW]}, headers=_bearer(old)).status_code == 200

    _config_file(config, new, secondary)
    rotated = time.monotonic()
    while client.post("/score", json={"data": [ROW]}, headers=_bearer(old)).status_code != 401:
        assert time.monotonic() - rotated < 1.0, "the old key still works a second after rotation"
        time.sleep(0.05)
    assert client.post("/score", json={"data": [ROW]}, headers=_bearer(new)).status_code == 200
    assert client.post("/score", json={"data": [ROW]}, headers=_bearer(secondary)).status_code == 200


def test_a_broken_config_file_keeps_the_last_good_one(make_bundle: BundleFactory, serve: Serve, tmp_path: Path) -> None:
    key = generate_key()
    config = _config_file(tmp_path / "c.json", key, generate_key())
    client = serve(make_bundle(script=SCORE_PY), config_path=config)
    config.write_text("{half written")
    time.sleep(0.6)
    assert client.post("/score", json={"data": [ROW]}, headers=_bearer(key)).status_code == 200


def test_auth_on_without_keys_refuses_everyone(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY), ScoringConfig())
    assert client.post("/score", json={"data": [ROW]}, headers=_bearer("")).status_code == 401


# ---------------------------------------------------------------------------------------- bodies
def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A raw ASGI scope for POST /score, for tests that must control how the body arrives."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/score", "raw_path": b"/score", "root_path": "", "query_string": b"", "server": ("t", 80),
        "client": ("c", 1), "headers": headers,
    }


def test_content_length_over_the_limit_is_413_before_the_body_is_read(make_bundle: BundleFactory) -> None:
    app = create_app(make_bundle(script=SCORE_PY), ScoringConfig(auth_enabled=False, max_request_bytes=100))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000000000")]
    asyncio.run(app(_scope(headers), receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["type"] == "PayloadTooLarge"


def test_a_body_that_does_not_arrive_in_time_is_408(make_bundle: BundleFactory) -> None:
    app = create_app(make_bundle(script=SCORE_PY), ScoringConfig(auth_enabled=False, request_timeout_seconds=0.2))
    service = app.state.scoring
    service.start()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(60)  # a client that never sends its body
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        assert service.wait_initialized(30)
        scope = _scope([(b"content-type", b"application/json")])
        asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    finally:
        service.close()
    assert sent[0]["status"] == 408
    assert service.active == 0


def test_a_streamed_body_over_the_limit_is_413(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY), ScoringConfig(auth_enabled=False, max_request_bytes=1000))

    def chunks() -> Iterator[bytes]:
        yield b'{"data": ['
        for _ in range(100):
            yield b"[1.0, 2.0, 3.0, 4.0],"
        yield b"[1.0, 2.0, 3.0, 4.0]]}"

    response = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    small = client.post("/score", content=iter([b'{"data": ', json.dumps([ROW]).encode(), b"}"]))
    assert small.status_code == 200  # no Content-Length and no Content-Type: read as JSON


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
                     "application/json; charset=latin-1"],
)
def test_non_json_content_types_are_415(make_bundle: BundleFactory, serve: Serve, content_type: str) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    response = client.post("/score", content=json.dumps({"data": [ROW]}), headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json()["type"] == "UnsupportedMediaType"


def test_json_content_type_variants_are_accepted(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"):
        response = client.post("/score", content=json.dumps({"data": [ROW]}), headers={"content-type": content_type})
        assert response.status_code == 200, content_type


# ---------------------------------------------------------------------------------------- concurrency
@contextlib.asynccontextmanager
async def _asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app's ASGI interface, in this event loop, with the service started."""
    service = app.state.scoring
    service.start()  # the ASGI transport runs no lifespan
    try:
        assert await asyncio.to_thread(service.wait_initialized, 30)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
            yield client
    finally:
        service.close()


async def _burst(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[tuple[httpx.Response, float]]:
    """All the requests at once; each with the time it took."""

    async def one(body: dict[str, Any]) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = await client.post("/score", json=body)
        return response, time.perf_counter() - started

    return await asyncio.gather(*(one(body) for body in bodies))


def test_a_burst_past_the_limit_gets_429_at_once(make_bundle: BundleFactory) -> None:
    config = ScoringConfig(auth_enabled=False, max_concurrent_requests=2, max_queued_requests=1)
    app = create_app(make_bundle(script=SCORE_PY), config)

    async def scenario() -> list[tuple[httpx.Response, float]]:
        async with _asgi_client(app) as client:
            return await _burst(client, [{"data": [ROW], "sleep": 0.5}] * 7)

    results = asyncio.run(scenario())
    statuses = sorted(response.status_code for response, _ in results)
    assert statuses == [200, 200, 200, 429, 429, 429, 429]  # 2 running + 1 queued
    for response, elapsed in results:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert elapsed < 0.3, "a refused request must not wait"
    queued = max(elapsed for response, elapsed in results if response.status_code == 200)
    assert queued >= 0.95  # the queued one waited for a worker thread (0.5 s), then ran (0.5 s)


def test_a_slow_run_is_504_and_keeps_its_slot_until_it_returns(make_bundle: BundleFactory, serve: Serve) -> None:
    config = ScoringConfig(auth_enabled=False, request_timeout_seconds=0.3, max_concurrent_requests=1)
    client = serve(make_bundle(script=SCORE_PY), config)
    started = time.perf_counter()
    response = client.post("/score", json={"data": [ROW], "sleep": 1.5})
    assert response.status_code == 504
    assert time.perf_counter() - started < 1.0
    assert response.json()["type"] == "Timeout"
    # The stuck run() still occupies the only worker thread: the bound holds.
    assert client.post("/score", json={"data": [ROW]}).status_code == 429
    deadline = time.monotonic() + 5
    while (status := client.post("/score", json={"data": [ROW]}).status_code) == 429:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status == 200
    metrics = client.get("/metrics").text
    assert 'aml_scoring_errors_total{kind="timeout"} 1' in metrics


def test_a_queued_request_past_its_timeout_never_runs(make_bundle: BundleFactory, tmp_path: Path) -> None:
    config = ScoringConfig(auth_enabled=False, request_timeout_seconds=0.3, max_concurrent_requests=1,
                           max_queued_requests=1)
    app = create_app(make_bundle(script=SCORE_PY), config)
    marker = tmp_path / "queued-one-ran"
    service = app.state.scoring

    async def scenario() -> None:
        async with _asgi_client(app) as client:
            results = await _burst(client, [{"data": [ROW], "sleep": 1.0}, {"data": [ROW], "touch": str(marker)}])
            assert [response.status_code for response, _ in results] == [504, 504]
            assert service.active == 1  # the running one keeps its slot; the queued one gave its slot back
            deadline = time.monotonic() + 5
            while service.active:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert not marker.exists()


# ---------------------------------------------------------------------------------------- observability
def test_metrics_count_requests_by_status(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    client.post("/score", json={"data": [ROW]})
    client.post("/score", json={"data": [ROW]})
    client.post("/score", content=b"{", headers={"content-type": "application/json"})
    client.post("/score", json={"data": [ROW], "crash": True})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'aml_scoring_requests_total{code="200"} 2' in text
    assert 'aml_scoring_requests_total{code="400"} 1' in text
    assert 'aml_scoring_requests_total{code="500"} 1' in text
    assert 'aml_scoring_errors_total{kind="run_error"} 1' in text
    assert 'aml_scoring_request_duration_seconds_bucket{le="+Inf"} 4' in text
    assert "aml_scoring_request_duration_seconds_count 4" in text
    assert "aml_scoring_in_flight 0" in text
    assert "aml_scoring_ready 1" in text


def test_request_ids_are_echoed_or_made(make_bundle: BundleFactory, serve: Serve) -> None:
    client = serve(make_bundle(script=SCORE_PY))
    echoed = client.post("/score", json={"data": [ROW]}, headers={"x-request-id": "abc-1"})
    assert echoed.headers["x-request-id"] == "abc-1"
    made = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/health", headers={"x-request-id": "bad id\x7f"}).headers["x-request-id"] != "bad id\x7f"


def test_telemetry_file_lines_with_samples(make_bundle: BundleFactory, tmp_path: Path) -> None:
    path = tmp_path / "telemetry" / "requests.jsonl"
    config = ScoringConfig(auth_enabled=False, telemetry_path=str(path), sample_rate=1.0)
    app = create_app(make_bundle(script=SCORE_PY), config)
    with TestClient(app) as client:
        app.state.scoring.wait_initialized(30)
        client.post("/score", json={"data": [ROW]}, headers={"x-request-id": "r1"})
        client.post("/score", json={"data": [ROW], "crash": True}, headers={"x-request-id": "r2"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # flushed at shutdown
    assert [(line["request_id"], line["status"]) for line in lines] == [("r1", 200), ("r2", 500)]
    assert json.loads(lines[0]["input"]) == {"data": [ROW]}
    assert json.loads(lines[0]["output"]) == {"predictions": ["setosa"]}
    assert lines[0]["latency_ms"] > 0 and lines[0]["time"] > 0


def test_telemetry_is_written_every_second_while_serving(
    make_bundle: BundleFactory, serve: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "requests.jsonl"
    client = serve(make_bundle(script=SCORE_PY), ScoringConfig(auth_enabled=False, telemetry_path=str(path)))
    client.post("/score", json={"data": [ROW]})
    deadline = time.monotonic() + 3
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "telemetry not flushed within the interval"
        time.sleep(0.1)
    line = json.loads(path.read_text())
    assert line["input"] is None and line["output"] is None  # sample_rate 0: no request data kept


class _ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, float, str | None, str | None]] = []

    def record(self, request_id: str, status: int, latency_ms: float, input_sample: str | None,
               output_sample: str | None) -> None:
        self.records.append((request_id, status, latency_ms, input_sample, output_sample))


def test_a_custom_sink_and_sampling(make_bundle: BundleFactory, serve: Serve) -> None:
    import random

    random.seed(7)
    sink = _ListSink()
    config = ScoringConfig(auth_enabled=False, sample_rate=0.5)
    client = serve(make_bundle(script=SCORE_PY), config, telemetry_sink=sink)
    for _ in range(60):
        client.post("/score", json={"data": [ROW]})
    assert len(sink.records) == 60
    sampled = [r for r in sink.records if r[3] is not None]
    assert 5 < len(sampled) < 55
    assert all(r[4] is not None for r in sampled)
    assert all(r[3] is None and r[4] is None for r in sink.records if r not in sampled)


def test_swagger_documents_the_input_schema(make_bundle: BundleFactory, serve: Serve) -> None:
    schema = {"type": "object", "properties": {"data": {"type": "array"}}, "required": ["data"]}
    client = serve(make_bundle(script=SCORE_PY, input_schema=schema))
    for path in ("/swagger.json", "/openapi.json"):
        document = client.get(path).json()
        operation = document["paths"]["/score"]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == schema
        assert "429" in operation["responses"]
        assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
