"""Byte progress bars (size, speed, ETA) for uploads, downloads and snapshots.

A bar is shown only when it helps: the caller asked for one, the transfer is big enough to take
a noticeable time, and a person is watching (stderr is a terminal). ``AML_PROGRESS=1`` forces
bars where stderr is not a terminal (e.g. a CI log); ``AML_PROGRESS=0`` turns them off
everywhere. Bars go to stderr so that they never mix with a command's stdout output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

ENV_PROGRESS = "AML_PROGRESS"
PROGRESS_THRESHOLD_BYTES = 8 * 1024 * 1024

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


def progress_wanted(total_bytes: int, enabled: bool, *, min_bytes: int = PROGRESS_THRESHOLD_BYTES) -> bool:
    """Whether a bar of ``total_bytes`` would be shown; see the module docstring for the rules."""
    setting = os.environ.get(ENV_PROGRESS, "").strip()
    if setting == "0" or not enabled or total_bytes <= min_bytes:
        return False
    if setting == "1":
        return True
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def transfer_progress(
    description: str,
    total_bytes: int,
    enabled: bool = True,
    *,
    min_bytes: int = PROGRESS_THRESHOLD_BYTES,
) -> Iterator[Advance]:
    """Yield ``advance(n_bytes)``; a bar is drawn on stderr only when :func:`progress_wanted`.

    ``advance`` is safe to call from several threads, and is a no-op when no bar is shown, so
    callers never need to branch on whether progress is visible.
    """
    if not progress_wanted(total_bytes, enabled, min_bytes=min_bytes):
        yield _noop
        return
    forced = os.environ.get(ENV_PROGRESS, "").strip() == "1"
    # Resolved now rather than at import time so that redirected/captured stderr is honoured.
    console = Console(file=sys.stderr, force_terminal=True if forced else None)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task(description, total=total_bytes)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance
