"""``ScoringService``: the state of one scoring server and the ``/score`` request path.

The order of the checks is the order of their cost: the key (a hash), the declared content type
and length (headers), readiness, a free slot (a counter), then the body, then ``run()`` in a
worker thread. A request that will be refused is refused before its body is read.

Concurrency is bounded by slots: ``max_concurrent_requests`` worker threads plus
``max_queued_requests`` waiting for one. Without a free slot the answer is an immediate 429. A
``run()`` that passes its timeout is answered 504 but keeps its slot until the thread returns, so
the bound stays true: calls that cannot be stopped still count.

When the scorer can score several inputs in one call (the built-in scorers; a script that
defines ``run_batch``) and ``max_batch_size`` > 1, the admitted requests go to a
``BatchingPool`` instead: a worker scores every request waiting for it in one call. Each request
still gets its own answer and its own error: a batch that fails is scored again one request at a
time, so one bad input fails only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from airflow_aml.runtime.model import ENV_BUNDLE_DIR
from airflow_aml.runtime.scoring.auth import check_authorization
from airflow_aml.runtime.scoring.batching import BatchingPool, Outcome
from airflow_aml.runtime.scoring.body import check_content_type, check_declared_length, parse_json, read_body
from airflow_aml.runtime.scoring.bundle import ImageManifest, read_manifest
from airflow_aml.runtime.scoring.config import ConfigWatcher, ScoringConfig
from airflow_aml.runtime.scoring.errors import HttpError, ScoringInputError
from airflow_aml.runtime.scoring.metrics import ScoringMetrics
from airflow_aml.runtime.scoring.pool import DaemonThreadPool
from airflow_aml.runtime.scoring.scorers import Scorer, load_scorer
from airflow_aml.runtime.scoring.telemetry import JsonlTelemetrySink, TelemetrySink

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "aml.request_id"  # where the request-id middleware leaves the id in the ASGI scope
_JSON = "application/json"
# Threads that call run_batch: one stacks every waiting request into its call while the other
# parses, encodes or waits on the next; more would only split the batches (the GIL is shared).
BATCH_WORKERS = 2
# Server-side failures by status, for aml_scoring_errors_total.
_ERROR_KINDS = {500: "run_error", 503: "not_ready", 504: "timeout"}


class ScoringService:
    def __init__(
        self, bundle_dir: str | Path, config: ScoringConfig | ConfigWatcher, *,
        telemetry_sink: TelemetrySink | None = None,
    ) -> None:
        self.bundle_dir = Path(bundle_dir).resolve()
        self.manifest: ImageManifest = read_manifest(self.bundle_dir)
        self.scorer: Scorer = load_scorer(self.bundle_dir, self.manifest)
        self.watcher = config if isinstance(config, ConfigWatcher) else ConfigWatcher(config)
        initial = self.watcher.current()
        self._workers = initial.max_concurrent_requests
        self._capacity = initial.max_concurrent_requests + initial.max_queued_requests
        self._pool: DaemonThreadPool | BatchingPool | None = None
        self._submit: Callable[[bytes], Future[bytes]] | None = None
        self.batching = False  # known once init() succeeded: whether the scorer takes batches
        self._closed = False
        self.active = 0  # slots held; changed on the event loop thread only
        self.sink = telemetry_sink
        self._own_sink = False
        self.ready = False
        self.init_error: str | None = None
        self._initialized = threading.Event()
        self._started = False
        self.metrics = ScoringMetrics(in_flight=lambda: self.active, ready=lambda: self.ready)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker threads, the telemetry writer, and ``init()`` in the background.

        ``init()`` may take minutes (a large model); meanwhile ``/health`` answers and ``/ready``
        says 503, as an orchestrator's probes expect.
        """
        if self._started:
            return
        self._started = True
        os.environ[ENV_BUNDLE_DIR] = str(self.bundle_dir)
        # Azure ML's variable, for scripts ported from it: the model folder when there is one model.
        models = self.manifest.models
        os.environ["AZUREML_MODEL_DIR"] = str(self.bundle_dir / (models[0].path if len(models) == 1 else "models"))
        initial = self.watcher.current()
        if initial.auth_enabled and not (initial.primary_key_hash or initial.secondary_key_hash):
            log.warning("Key authentication is on but no key hash is configured: /score and /metrics refuse everyone")
        if self.sink is None and initial.telemetry_path:
            self.sink = JsonlTelemetrySink(initial.telemetry_path)
            self._own_sink = True
        if isinstance(self.sink, JsonlTelemetrySink):
            sink = self.sink
            self.metrics.telemetry_dropped = lambda: sink.dropped
        threading.Thread(target=self._init, name="aml-score-init", daemon=True).start()

    def _init(self) -> None:
        try:
            self.scorer.init()
            self._start_workers(self.watcher.current())
            self.ready = True
            log.info("Scoring service %s:%s is ready", self.manifest.name, self.manifest.version)
        except BaseException as exc:  # anything init() raises (even SystemExit) is reported by /ready
            self.init_error = f"{type(exc).__name__}: {exc}"
            log.exception("init() of %s:%s failed", self.manifest.name, self.manifest.version)
        finally:
            self._initialized.set()

    def _start_workers(self, config: ScoringConfig) -> None:
        """The worker threads, once the scorer is loaded: a script says in init() whether it batches."""
        if self._closed:
            return
        if config.max_batch_size > 1 and getattr(self.scorer, "supports_batches", False):
            # Fewer threads than slots: the waiting requests are batched, not spread over threads
            # that would fight over the GIL for one row each.
            pool = BatchingPool(
                min(self._workers, BATCH_WORKERS), "aml-score", self._score_batch,
                max_batch_size=config.max_batch_size, max_latency=config.max_latency_ms / 1000.0,
                on_batch=self.metrics.batch,
            )
            self._submit = pool.submit
            self.batching = True
            self._pool = pool
        else:
            threads = DaemonThreadPool(self._workers, "aml-score")
            self._submit = lambda body: threads.submit(self._score_job, body)
            self._pool = threads

    def wait_initialized(self, timeout: float | None = None) -> bool:
        """Block until ``init()`` ended (either way); True when the service is ready."""
        self._initialized.wait(timeout)
        return self.ready

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._own_sink and isinstance(self.sink, JsonlTelemetrySink):
            self.sink.close()

    # ------------------------------------------------------------------ requests
    def readiness(self) -> tuple[int, dict[str, Any]]:
        if self.ready:
            return 200, {"status": "ready"}
        if self.init_error is not None:
            return 503, {"status": "failed", "error": self.init_error}
        return 503, {"status": "initializing"}

    def authorize(self, request: Request) -> None:
        check_authorization(request.headers.get("authorization"), self.watcher.current())

    async def score(self, request: Request) -> Response:
        started = time.perf_counter()
        config = self.watcher.current()
        headers = request.headers
        try:
            check_authorization(headers.get("authorization"), config)
            check_content_type(headers.get("content-type"))
            check_declared_length(headers.get("content-length"), config.max_request_bytes)
            if not self.ready or self._pool is None:
                _, state = self.readiness()
                raise HttpError(503, f"The service is not ready: {state.get('error', state['status'])}", "NotReady")
            if self.active >= self._capacity:
                raise HttpError(
                    429, f"Too many requests: {self.active} in progress, the limit is {self._capacity}",
                    "TooManyRequests", {"Retry-After": "1"},
                )
            output, body = await self._admitted(request, config)
            status = 200
            response = Response(output, media_type=_JSON)
        except HttpError as exc:
            status = exc.status
            body = exc.request_body
            output = json.dumps({"error": exc.message, "type": exc.type}).encode()
            response = Response(output, status_code=status, headers=exc.headers, media_type=_JSON)
            if status in _ERROR_KINDS:
                self.metrics.error(_ERROR_KINDS[status])
        elapsed = time.perf_counter() - started
        self.metrics.observe(status, elapsed)
        if self.sink is not None:
            self._record(request, config, status, elapsed, body, output)
        return response

    async def _admitted(self, request: Request, config: ScoringConfig) -> tuple[bytes, bytes]:
        """Read the body and score it, holding a slot: (JSON answer, body)."""
        submit = self._submit
        if self._pool is None or submit is None:
            raise HttpError(503, "The service is shutting down", "NotReady")
        body = b""
        job: Future[bytes] | None = None
        self.active += 1
        try:
            # One deadline for both: a body that does not arrive is a 408, a run() that does not end a 504.
            async with asyncio.timeout(config.request_timeout_seconds):
                body = await read_body(request, config.max_request_bytes)
                job = submit(body)
                return await asyncio.wrap_future(job), body
        except TimeoutError:
            error = self._timed_out(job, config)
            error.request_body = body
            raise error from None
        except HttpError as error:
            error.request_body = body
            raise
        finally:
            self._release()

    def _timed_out(self, job: Future[bytes] | None, config: ScoringConfig) -> HttpError:
        limit = config.request_timeout_seconds
        if job is None:
            return HttpError(408, f"The request body did not arrive within {limit} s", "RequestTimeout")
        # Cancelling works only for a job still queued. A running run() cannot be stopped: it takes
        # a slot of its own until it returns, so the bound on concurrent calls stays true.
        if not job.cancel():
            self.active += 1
            loop = asyncio.get_running_loop()
            job.add_done_callback(lambda _: _call_soon(loop, self._release))
        return HttpError(
            504, f"run() did not finish within {limit} s (it keeps running in its worker thread, which cannot be "
            "stopped, and holds its slot until it returns)", "Timeout",
        )

    def _release(self) -> None:
        self.active -= 1

    def _score_job(self, body: bytes) -> bytes:
        """Parse, score and encode in a worker thread: the event loop only moves bytes."""
        text, payload = parse_json(body)
        return self._score_one(text, payload)

    def _score_one(self, text: str, payload: Any) -> bytes:
        try:
            result = self.scorer.run(text, payload)
        except ScoringInputError as exc:
            raise HttpError(400, str(exc), "InvalidInput") from exc
        except BaseException as exc:  # the script's failure is the client's 500, never the server's end
            log.exception("run() failed")
            raise HttpError(500, str(exc) or repr(exc), type(exc).__name__) from exc
        return _encode(result)

    def _score_batch(self, bodies: Sequence[bytes]) -> list[Outcome]:
        """The BatchingPool's handler: one outcome per body, and it never raises."""
        outcomes: list[Outcome] = [b""] * len(bodies)
        parsed: list[tuple[int, str, Any]] = []
        for index, body in enumerate(bodies):
            try:
                text, payload = parse_json(body)
            except HttpError as exc:  # malformed JSON fails its own request only
                outcomes[index] = exc
                continue
            parsed.append((index, text, payload))
        if len(parsed) > 1:
            try:
                results = self.scorer.run_batch([(text, payload) for _, text, payload in parsed])  # type: ignore[attr-defined]
                if len(results) != len(parsed):
                    raise ValueError(f"run_batch returned {len(results)} results for {len(parsed)} inputs")
            except BaseException as exc:
                # One bad input (or a mix the scorer cannot stack) fails the whole call: each is
                # scored alone, so only what is wrong with a request fails that request.
                log.debug("A batch of %d failed (%s): scoring its requests one at a time", len(parsed), exc)
            else:
                for (index, _, _), result in zip(parsed, results, strict=True):
                    outcomes[index] = _outcome(_encode, result)
                return outcomes
        for index, text, payload in parsed:
            outcomes[index] = _outcome(self._score_one, text, payload)
        return outcomes

    def _record(
        self, request: Request, config: ScoringConfig, status: int, elapsed: float, body: bytes, output: bytes
    ) -> None:
        sampled = config.sample_rate > 0 and random.random() < config.sample_rate
        self.sink.record(  # type: ignore[union-attr]
            request.scope.get(REQUEST_ID_KEY, ""), status, elapsed * 1000.0,
            body.decode("utf-8", "replace") if sampled and body else None,
            output.decode("utf-8", "replace") if sampled else None,
        )


def _encode(result: Any) -> bytes:
    try:
        return json.dumps(result, default=_jsonable, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        message = f"run() returned a value that cannot be sent as JSON: {exc}"
        raise HttpError(500, message, "SerializationError") from exc


def _outcome(fn: Callable[..., bytes], *args: Any) -> Outcome:
    try:
        return fn(*args)
    except HttpError as exc:
        return exc


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed while run() was stuck: nothing to give back
        loop.call_soon_threadsafe(callback)


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars (what run() often returns) as lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
