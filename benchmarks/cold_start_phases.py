"""The phase timeline of one local deploy, for ``deploy_cold_start.py --phases``.

A thread tails every log in the deployment's folder (the supervisor's and the replicas') every
10 ms and notes when each known line first appears, relative to ``Deployment.create``; the
processes' own clocks are not needed. Line-based, so a phase boundary is seen within ~10 ms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

# (phase name, a substring of the log line that ends it), in the order they should happen.
MARKS = (
    ("supervisor: applying", "Applying generation"),
    ("supervisor: replica spawned", "Started replica"),
    ("replica: app built (imports)", "Started server process"),
    ("replica: listening", "Uvicorn running on"),
    ("replica: init() done", "is ready"),
)


class LogTimeline:
    """Tails ``folder/logs/*.log`` from a thread; ``seen`` maps a mark to seconds since ``started``."""

    def __init__(self, folder: Path, started: float) -> None:
        self.folder = folder
        self.started = started
        self.seen: dict[str, float] = {}
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, daemon=True)

    def __enter__(self) -> LogTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _tail(self) -> None:
        deadline = time.monotonic() + 300  # bounded: a stuck deploy does not leave this thread running
        while not self._stop.is_set() and time.monotonic() < deadline:
            for path in sorted((self.folder / "logs").glob("*.log")) if (self.folder / "logs").is_dir() else []:
                try:
                    with path.open("rb") as handle:
                        handle.seek(self._offsets.get(path, 0))
                        chunk = handle.read()
                except OSError:
                    continue
                complete = chunk[: chunk.rfind(b"\n") + 1]
                self._offsets[path] = self._offsets.get(path, 0) + len(complete)
                now = time.monotonic() - self.started
                for line in complete.decode(errors="replace").splitlines():
                    for name, needle in MARKS:
                        if needle in line and name not in self.seen:
                            self.seen[name] = now
            time.sleep(0.01)

    def line(self, spawned: float, first_200: float) -> str:
        marks = [("create() returned (supervisor spawned)", spawned)]
        marks += [(name, self.seen[name]) for name, _ in MARKS if name in self.seen]
        marks.append(("first 200 through the front", first_200))
        return ", ".join(f"{name} {at:.2f}" for name, at in marks)
