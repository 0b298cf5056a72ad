"""Carrying one image version from Building to Succeeded or Failed.

``execute_build`` runs in the process that called ``Image.create(wait=True)``, or in the detached
worker (``worker.py``) for ``wait=False``. Steps and the image_build activity's progress:

    0.02        started
    0.05-0.35   bundle: models downloaded, app copied, hashed, published (bundle.py)
    0.35-0.95   the builder (local: the cached virtualenv)
    0.97        build log saved
    1.0         Succeeded (digest, location, properties recorded)

Whatever goes wrong ends the image Failed with the reason (and the activity too), the log saved
to ``images/<name>/<version>/build.log`` in the datastore; the record keeps that path and the
last lines. Only SIGKILL of the building process can leave an image Building, which
``Image.wait_for_completion`` detects (the builder's pid is recorded).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from airflow_aml.activities import ActivityKind, ProgressCallback
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ActivityStatus, ImageRecord, ImageStatus
from airflow_aml.exceptions import AmlError
from airflow_aml.images.builders import build_image_builder
from airflow_aml.images.bundle import assemble_bundle
from airflow_aml.images.plan import BuildPlan

log = logging.getLogger(__name__)

ACTIVITY_KIND = ActivityKind.IMAGE_BUILD
PROP_BUILD_DIGEST = "aml.build_digest"  # a builder's own digest when it differs from the bundle's
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 8000


def build_log_path(name: str, version: int) -> str:
    """Datastore path of an image version's full build log."""
    return f"images/{name}/{version}/build.log"


class BuildLog:
    """The build's log lines, in memory (a build log is uv's output: small), thread-safe."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._echo = echo

    def __call__(self, text: str) -> None:
        lines = str(text).splitlines() or [""]
        with self._lock:
            self._lines.extend(lines)
        if self._echo is not None:
            for line in lines:
                self._echo(line)

    def text(self) -> str:
        with self._lock:
            return "".join(f"{line}\n" for line in self._lines)

    def tail(self) -> str:
        with self._lock:
            text = "".join(f"{line}\n" for line in self._lines[-LOG_TAIL_LINES:])
        return text[-LOG_TAIL_CHARS:]


def execute_build(
    workspace: WorkspaceContext, plan: BuildPlan, *, echo: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImageRecord:
    """Build the image version of ``plan`` (created, status Building); returns its final record.

    A failed build returns the Failed record (it does not raise); an interrupt (KeyboardInterrupt,
    SystemExit) records Failed and is re-raised. ``echo`` also receives every log line,
    ``on_progress`` the build activity at every step.
    """
    assert plan.version and plan.activity_id, "the plan's image version and activity must exist"
    store = workspace.store
    build_log = BuildLog(echo)
    ws, name, version, activity = workspace.name, plan.name, plan.version, plan.activity_id

    def report(fraction: float, message: str) -> None:
        build_log(f"[{fraction:4.0%}] {message}")
        record = store.update_activity(activity, status=ActivityStatus.RUNNING, progress=fraction, message=message)
        store.update_image(ws, name, version, build_log_tail=build_log.tail())
        if on_progress is not None:
            on_progress(record)

    def scaled(low: float, high: float) -> Callable[[float, str], None]:
        return lambda fraction, message: report(low + (high - low) * min(1.0, max(0.0, fraction)), message)

    try:
        report(0.02, f"Building image '{name}' version {version} with the {plan.builder} builder")
        builder = build_image_builder(plan.builder, workspace)
        bundle = assemble_bundle(plan, workspace.get_datastore, progress=scaled(0.05, 0.35), log=build_log)
        result = builder.build(bundle.path, store.get_image(ws, name, version), scaled(0.35, 0.95), build_log)
        report(0.97, "Saving the build log")
        properties = dict(result.properties)
        if result.digest != bundle.digest:
            properties[PROP_BUILD_DIGEST] = result.digest
        build_log(f"Image '{name}' version {version} built: {result.location}")
        log_path = _save_log(workspace, plan, build_log)
        final = store.update_image(
            ws, name, version, status=ImageStatus.SUCCEEDED, digest=bundle.digest, location=result.location,
            build_log_path=log_path, build_log_tail=build_log.tail(), properties=properties,
        )
        store.update_activity(
            activity, status=ActivityStatus.SUCCEEDED, progress=1.0,
            message=f"Image '{name}' version {version} built",
        )
        return final
    except BaseException as exc:
        error = str(exc) if isinstance(exc, AmlError) else f"{type(exc).__name__}: {exc}"
        build_log(f"ERROR: {error}")
        _record_failure(workspace, plan, build_log, error)
        if not isinstance(exc, Exception):
            raise
        log.info("Image %s:%s failed to build: %s", name, version, error)
        return store.get_image(ws, name, version)


def _save_log(workspace: WorkspaceContext, plan: BuildPlan, build_log: BuildLog) -> str:
    path = build_log_path(plan.name, plan.version)
    workspace.get_datastore(plan.datastore).write_bytes(path, build_log.text().encode())
    return path


def _record_failure(workspace: WorkspaceContext, plan: BuildPlan, build_log: BuildLog, error: str) -> None:
    """Best effort, step by step: the status must be written even if saving the log fails."""
    store = workspace.store
    log_path = None
    try:
        log_path = _save_log(workspace, plan, build_log)
    except Exception:
        log.warning("Could not save the build log of image %s", plan.image_id, exc_info=True)
    try:
        store.update_image(
            workspace.name, plan.name, plan.version, status=ImageStatus.FAILED, error=error,
            build_log_path=log_path, build_log_tail=build_log.tail(),
        )
    except Exception:
        log.error("Could not record image %s as Failed", plan.image_id, exc_info=True)
    with contextlib.suppress(Exception):
        first_line = error.splitlines()[0] if error else "unknown error"
        store.update_activity(
            plan.activity_id or "", status=ActivityStatus.FAILED, error=error,
            message=f"Image build failed: {first_line}",
        )
