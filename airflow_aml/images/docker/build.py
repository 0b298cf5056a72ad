"""Build streaming: send a build context to the engine and follow the build's log.

:func:`run_build` turns the engine's stream of JSON chunks into log lines, a progress report at
each ``Step n/m``, and on failure a :class:`DockerBuildError` naming the failing step with its last
log lines. Before it raises, it removes the layers this build created, so that failed builds do
not pile up dangling images; the layers it found in the cache are other builds' and stay.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_aml.exceptions import DockerBuildError
from airflow_aml.images.docker.engine import _remove_quietly

if TYPE_CHECKING:
    import docker

    from airflow_aml.images.builders import LogFn as Log
    from airflow_aml.images.builders import ProgressFn as Progress
    from airflow_aml.images.docker.context import BuildContext
    from airflow_aml.images.docker.options import DockerBuildOptions

# The classic builder's log: "Step 3/9 : COPY ..." starts a step, " ---> <id>" ends it with the
# layer it made (or found in the cache, after " ---> Using cache").
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


def run_build(
    api: docker.APIClient,
    options: DockerBuildOptions,
    context: BuildContext,
    tar_path: Path,
    progress: Progress,
    log: Log,
) -> str | None:
    """Send the context, follow the build; on failure remove the layers this build made.

    Returns the image id the engine reported (None when it reported none).
    """
    import requests

    started = time.monotonic()
    deadline = started + options.build_timeout
    tail: deque[str] = deque(maxlen=30)
    step: str | None = None
    step_cached = False
    created: list[str] = []  # intermediate images this build made (not found in the cache)
    image_id: str | None = None

    def failed(message: str) -> DockerBuildError:
        _remove_quietly(api, reversed(created))
        return DockerBuildError(message, step=step, log_tail=list(tail))

    try:
        with open(tar_path, "rb") as fileobj:
            stream = api.build(
                fileobj=fileobj,
                custom_context=True,
                tag=context.tag,
                rm=True,
                forcerm=True,
                pull=False,
                nocache=options.no_cache,
                network_mode=options.network_mode,
                buildargs=context.buildargs or None,
                decode=True,
                timeout=int(options.build_timeout),
            )
            for line, chunk in _log_lines(stream):
                if chunk is not None:
                    if "error" in chunk or "errorDetail" in chunk:
                        detail = chunk.get("errorDetail") or {}
                        message = str(detail.get("message") or chunk.get("error") or "unknown error").strip()
                        raise failed(_failure_message(context.tag, step, message, tail))
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = aux["ID"]
                    continue
                assert line is not None
                log(line)
                tail.append(line)
                match = _STEP.match(line)
                if match:
                    n, m = int(match.group(1)), int(match.group(2))
                    step, step_cached = line, match.group(3).startswith("FROM ")
                    tail.clear()
                    tail.append(line)
                    progress(0.05 + 0.9 * (n - 1) / m, f"Step {n}/{m}: {match.group(3)[:80]}")
                elif line.strip() == "---> Using cache":
                    step_cached = True
                elif (layer := _LAYER.match(line)) and not step_cached:
                    created.append(layer.group(1))
                # The engine's own timeout covers a silent connection only: a build that keeps
                # logging is stopped here.
                if time.monotonic() > deadline:
                    where = f" in {step}" if step else ""
                    limit = f"{options.build_timeout:.0f} s"
                    raise failed(f"Docker build of {context.tag} timed out after {limit}{where}")
    except requests.RequestException as exc:
        elapsed = time.monotonic() - started
        what = "timed out" if elapsed >= options.build_timeout * 0.99 else "lost the Docker engine"
        where = f" in {step}" if step else ""
        raise failed(f"Docker build of {context.tag} {what} after {elapsed:.0f} s{where}: {exc}") from exc
    return image_id


def _log_lines(stream: Iterable[dict[str, Any]]) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    """(line, None) for each complete log line of the build, (None, chunk) for the other messages."""
    # Chunks split lines anywhere (and may hold several): text is buffered up to each newline.
    pending = ""
    for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        text = chunk.get("stream")
        if text is None and chunk.get("status"):  # pull progress
            status = str(chunk["status"])
            text = f"{status} {chunk.get('progress', '')}".rstrip() + "\n"
            if chunk.get("progressDetail"):  # a byte counter: too chatty for a log
                text = None
        if text is not None:
            pending += str(text)
            *complete, pending = re.split(r"\r?\n", pending)
            for line in complete:
                if line.strip():
                    yield line.rstrip(), None
        if set(chunk) - {"stream", "status", "progress", "progressDetail", "id"}:
            if pending.strip():
                yield pending.rstrip(), None
                pending = ""
            yield None, chunk
    if pending.strip():
        yield pending.rstrip(), None


def _failure_message(tag: str, step: str | None, message: str, tail: Iterable[str]) -> str:
    # The engine's error alone ("returned a non-zero code: 1") says nothing: the failing step's
    # last lines hold the reason (pip's error, a traceback).
    where = f" at {step}" if step else ""
    lines = list(tail)[-15:]
    text = f"Docker build of {tag} failed{where}: {message}"
    if lines:
        text += "\nLast log lines:\n" + "\n".join(f"  {line}" for line in lines)
    return text
