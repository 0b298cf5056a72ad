"""Adaptive batching: the requests waiting for a worker are scored together, in one call.

Each worker thread takes the oldest waiting request, then every other one already waiting (up
to ``max_batch_size``), and hands the lot to one ``score_batch`` call. Nothing waits for a batch
to fill by default (``max_latency`` 0): an idle server scores a lone request at once, as it would
without batching, and batches grow by themselves exactly when requests queue up behind a busy
worker. That is where one ``predict`` over N rows costs little more than over one row, so the
throughput grows with the load instead of the latency. A positive ``max_latency`` lets a worker
wait that long after the oldest request arrived for more to join it (Triton's queue delay).

Every request keeps its own future: its own answer, or its own error. A request cancelled while
it waited (its timeout passed) is dropped from the batch and never scored.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

# What score_batch returns per body, in order: the encoded answer, or the error for that request.
Outcome = bytes | BaseException


class _Request:
    __slots__ = ("arrived", "body", "future")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.future: Future[bytes] = Future()
        self.arrived = time.monotonic()


class BatchingPool:
    """Worker threads that each score the waiting requests with one ``score_batch(bodies)`` call.

    ``score_batch`` must return one outcome per body, in order; if it raises, every request of
    the batch gets that error (ScoringService's handler never raises: it retries one at a time).
    Daemon threads, as in ``DaemonThreadPool``: a call that cannot end must not block the exit.
    """

    def __init__(
        self, workers: int, name: str, score_batch: Callable[[Sequence[bytes]], Sequence[Outcome]], *,
        max_batch_size: int, max_latency: float = 0.0, on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._score_batch = score_batch
        self.max_batch_size = max_batch_size
        self.max_latency = max(0.0, max_latency)
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, body: bytes) -> Future[bytes]:
        request = _Request(body)
        self._queue.put(request)
        return request.future

    def shutdown(self) -> None:
        """Let the workers end once what is queued was scored (or is abandoned at exit)."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stop = self._gather(first)
            live = [request for request in batch if request.future.set_running_or_notify_cancel()]
            del batch, first  # cancelled requests' bodies are not kept alive while the batch runs
            if live:
                self._run(live)
            del live
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and the requests waiting behind it; True when a shutdown came in between."""
        batch = [first]
        deadline = first.arrived + self.max_latency
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            outcomes = self._score_batch([request.body for request in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"score_batch returned {len(outcomes)} outcomes for {len(batch)} requests")
        except BaseException as exc:  # handed to every waiting request, as a thread pool would
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
