"""Buffered metric writes: ``run.log`` costs a list append, not a transaction.

A training loop that logs 10,000 values must not issue 10,000 transactions. Metrics are queued in
memory and written with ``store.log_batch`` when the queue reaches ``max_items``, every
``interval`` seconds from a background thread (so a dashboard sees them while the script runs), on
``flush()``, and at interpreter exit. What was flushed stays; at most ``interval`` seconds of
values can be lost if the process is killed with SIGKILL.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

from airflow_aml.entities import Metric
from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_ITEMS = 2000
DEFAULT_INTERVAL = 1.0
_WRITE_ATTEMPTS = 5


class MetricBuffer:
    def __init__(
        self, store: AbstractStore, *, max_items: int = DEFAULT_MAX_ITEMS, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self._store = store
        self._max_items = max_items
        self._interval = interval
        self._pending: list[tuple[str, Metric]] = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # keeps batches in order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        _LIVE_BUFFERS.add(self)

    def add(self, run_id: str, metric: Metric) -> None:
        with self._lock:
            self._pending.append((run_id, metric))
            full = len(self._pending) >= self._max_items
        if full:
            self.flush()
        elif self._thread is None:
            self._start_thread()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything queued so far; returns when it is in the store."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            by_run: dict[str, list[Metric]] = defaultdict(list)
            for run_id, metric in batch:
                by_run[run_id].append(metric)
            for run_id, metrics in by_run.items():
                self._write(run_id, metrics)

    def take(self, run_id: str, write: Callable[[list[Metric]], T]) -> T:
        """Hand the metrics queued for ``run_id`` to ``write`` (which stores them in its own
        transaction, e.g. with the run's final status) instead of a batch of their own. Under
        the write lock, so they are stored after any batch in flight; if ``write`` fails they
        are queued again, first, for the next flush."""
        with self._write_lock:
            with self._lock:
                mine = [metric for owner, metric in self._pending if owner == run_id]
                if mine:
                    self._pending = [item for item in self._pending if item[0] != run_id]
            try:
                return write(mine)
            except BaseException:
                if mine:
                    with self._lock:
                        self._pending[:0] = [(run_id, metric) for metric in mine]
                raise

    def _write(self, run_id: str, metrics: list[Metric]) -> None:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                self._store.log_batch(run_id, metrics)
                return
            except Exception:
                if attempt == _WRITE_ATTEMPTS:
                    raise
                log.warning("Writing %d metrics of run %s failed; retrying", len(metrics), run_id, exc_info=True)
                time.sleep(0.2 * 2**attempt)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="aml-metric-flush", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            try:
                self.flush()
            except Exception:  # never kill the flusher: the next flush (or exit) tries again
                log.exception("Background metric flush failed")


_LIVE_BUFFERS: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()
_BY_STORE: dict[int, MetricBuffer] = {}
_BY_STORE_LOCK = threading.Lock()


def buffer_for(store: AbstractStore) -> MetricBuffer:
    """One buffer per store per process, shared by every run logging through that store."""
    with _BY_STORE_LOCK:
        buffer = _BY_STORE.get(id(store))
        if buffer is None or buffer._store is not store:
            buffer = _BY_STORE[id(store)] = MetricBuffer(store)
        return buffer


def flush_all() -> None:
    for buffer in list(_LIVE_BUFFERS):
        try:
            buffer.flush()
        except Exception:
            log.exception("Flushing metrics at exit failed")


atexit.register(flush_all)
