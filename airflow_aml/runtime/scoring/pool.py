"""The worker threads that call ``run()``: ``ThreadPoolExecutor.submit`` with daemon threads.

``run()`` is synchronous and CPU-bound, so it runs off the event loop. A call that passes the
request timeout cannot be stopped (Python has no way to kill a thread); ThreadPoolExecutor joins
its threads at interpreter exit, so one stuck call would keep the server from ever shutting down.
Daemon threads are abandoned at exit instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonThreadPool:
    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Let idle threads end; calls still queued or running finish first (or are abandoned at exit)."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            _call(*item)
            del item  # the request's data is not kept alive by an idle thread


def _call(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not future.set_running_or_notify_cancel():  # cancelled while queued: never run it
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # handed to the waiting request, as ThreadPoolExecutor does
        future.set_exception(exc)
    else:
        future.set_result(result)
