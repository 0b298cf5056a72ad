"""The heartbeat of a run's supervisor: a thread that stamps the run in the store every few seconds.

A supervisor killed with SIGKILL, by the OOM killer or by a reboot cannot record its own end; its
run would stay Running for ever. Waiters on this machine see the process gone; anywhere else (and
after a reboot here) the silence of the heartbeat tells: ``runs.reap_lost_runs`` and every run
waiter fail a run whose heartbeat is older than ``$AML_RUN_LOST_AFTER_SECONDS``.

The beat is a thread of the supervisor, not of the training script: a script that holds the GIL
for minutes, or blocks in C, does not make its run look lost.
"""

from __future__ import annotations

import logging
import threading

from airflow_aml.config import run_heartbeat_seconds
from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(store, run_id):`` beats from entry (once at once) until exit."""

    def __init__(self, store: AbstractStore, run_id: str, *, interval: float | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.interval = run_heartbeat_seconds() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _beat(self) -> None:
        while True:
            try:
                self.store.beat_run_heartbeat(self.run_id)
                self.beats += 1
            except Exception:  # a store hiccup must not end the run; the next beat may get through
                log.warning("Heartbeat of run %s not recorded", self.run_id, exc_info=True)
            if self._stop.wait(self.interval):
                return
