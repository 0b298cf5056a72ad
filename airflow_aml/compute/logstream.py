"""Streaming a script's output into the run log while it runs.

Writing every line to the store would be one transaction per ``print``; writing once at the end
would hide the log until the run is over. ``LogBatcher`` groups text per stream and sends a chunk
when it is ``max_delay`` seconds old or ``max_bytes`` long, whichever comes first.
"""

from __future__ import annotations

import codecs
import collections
import logging
import os
import threading
import time
from typing import IO

from airflow_aml.store.base import AbstractStore

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
MAX_DELAY_SECONDS = 1.0


class LogBatcher:
    """Buffers text per stream and appends it to the run log in chunks.

    Thread-safe: the stdout and stderr pumps and the supervisor's control messages write
    concurrently. ``mirror`` (the local driver log file) receives the ``mirror_streams`` text
    immediately, in arrival order.
    """

    def __init__(
        self,
        store: AbstractStore,
        run_id: str,
        *,
        max_bytes: int = MAX_CHUNK_BYTES,
        max_delay: float = MAX_DELAY_SECONDS,
        mirror: IO[str] | None = None,
        mirror_streams: tuple[str, ...] = ("stdout", "stderr"),
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self.mirror = mirror
        self.mirror_streams = mirror_streams
        self._buffers: dict[str, list[str]] = {}
        self._sizes: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()
        # Sends are serialized so that two flushes of one stream cannot reach the store out of order.
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"aml-log-{run_id}", daemon=True)
        self._flusher.start()

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self.mirror is not None and stream in self.mirror_streams:
                try:
                    self.mirror.write(text)
                    self.mirror.flush()
                except (OSError, ValueError):  # closed by the time a straggling pump writes
                    log.debug("Driver log of run %s is closed; text kept in the store only", self.run_id)
            self._buffers.setdefault(stream, []).append(text)
            self._sizes[stream] = self._sizes.get(stream, 0) + len(text.encode("utf-8", "replace"))
            self._since.setdefault(stream, time.monotonic())
            full = self._sizes[stream] >= self.max_bytes
        if full:
            self._send(stream)

    def set_mirror(self, mirror: IO[str] | None) -> None:
        with self._lock:
            self.mirror = mirror

    def line(self, stream: str, text: str) -> None:
        """Write ``text`` as one line (adds the newline)."""
        self.write(stream, text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        for stream in list(self._buffers):
            self._send(stream)

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=5)
        self.flush()

    # ------------------------------------------------------------------ internals
    def _flush_loop(self) -> None:
        tick = min(0.2, self.max_delay / 2)
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._lock:
                due = [s for s, since in self._since.items() if now - since >= self.max_delay]
            for stream in due:
                self._send(stream)

    def _send(self, stream: str) -> None:
        with self._send_lock:
            with self._lock:
                parts = self._buffers.pop(stream, [])
                self._sizes.pop(stream, None)
                self._since.pop(stream, None)
            if not parts:
                return
            for chunk in split_utf8("".join(parts), self.max_bytes):
                self._append(stream, chunk)

    def _append(self, stream: str, chunk: str) -> None:
        # One retry: SQLite may be briefly locked by another writer. A log chunk is not worth
        # failing the run for, so a second failure drops it with a warning.
        for attempt in (1, 2):
            try:
                self.store.append_log(self.run_id, stream, chunk)
                return
            except Exception:
                if attempt == 2:
                    log.warning("Dropped %d characters of %s log of run %s", len(chunk), stream,
                                self.run_id, exc_info=True)
                else:
                    time.sleep(0.5)


def split_utf8(text: str, limit: int) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, preferably at line ends."""
    pieces = []
    while text:
        if len(text.encode("utf-8", "replace")) <= limit:
            pieces.append(text)
            break
        cut = limit // 4 if limit >= 4 else 1  # a code point is at most 4 bytes
        # Grow the cut while it still fits (binary search over characters).
        lo, hi = cut, min(len(text), limit)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(text[:mid].encode("utf-8", "replace")) <= limit:
                lo = mid
            else:
                hi = mid - 1
        newline = text.rfind("\n", 0, lo)
        end = newline + 1 if newline >= lo // 2 else lo
        pieces.append(text[:end])
        text = text[end:]
    return pieces


class Tail:
    """The last ``max_lines`` complete lines of a stream (plus the unterminated last one)."""

    def __init__(self, max_lines: int = 20) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._partial = ""
        self._lock = threading.Lock()

    def feed(self, text: str) -> None:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            self._lines.extend(lines)

    def lines(self) -> list[str]:
        with self._lock:
            out = list(self._lines)
            if self._partial:
                out.append(self._partial)
            return out[-(self._lines.maxlen or len(out)):]


def pump(fd: int, stream: str, batcher: LogBatcher, tail: Tail | None = None) -> None:
    """Copy a pipe into the batcher until EOF.

    ``os.read`` returns whatever is available (a buffered ``read(n)`` would wait for n bytes), so a
    slow trickle of output reaches the store within ``max_delay``.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            text = decoder.decode(data)
            batcher.write(stream, text)
            if tail is not None:
                tail.feed(text)
        rest = decoder.decode(b"", final=True)
        batcher.write(stream, rest)
        if tail is not None:
            tail.feed(rest)
    finally:
        os.close(fd)
