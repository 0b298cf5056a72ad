"""The container of one docker run: created with labels, found again by them, watched, collected.

Every container this target starts carries the labels ``airflow-aml.kind=run``,
``airflow-aml.workspace`` and ``airflow-aml.run-id`` and is named ``aml-run-<run id>``: a
supervisor started again for the run (or a waiter asking whether the run is still carried) finds
it by label instead of starting a second one. All engine calls are the low-level
``docker.APIClient``'s, the client :func:`airflow_aml.images.docker.docker_api_client` returns
(the provider's ``DockerHook`` or the docker SDK).
"""

from __future__ import annotations

import codecs
import io
import logging
import tarfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_aml.compute.logstream import LogBatcher, Tail
from airflow_aml.images.docker.options import LABEL_PREFIX
from airflow_aml.images.docker.runs.config import DockerComputeConfig
from airflow_aml.images.docker.runs.image import WORK_DIR

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

LABEL_KIND = f"{LABEL_PREFIX}kind"
LABEL_WORKSPACE = f"{LABEL_PREFIX}workspace"
LABEL_RUN_ID = f"{LABEL_PREFIX}run-id"


def container_name(run_id: str) -> str:
    return f"aml-run-{run_id}"


def find_container(api: docker.APIClient, run_id: str) -> dict[str, Any] | None:
    """The run's container (running or not) as ``inspect_container`` describes it, or None."""
    from docker.errors import NotFound

    found = api.containers(all=True, filters={"label": [f"{LABEL_KIND}=run", f"{LABEL_RUN_ID}={run_id}"]})
    for summary in found:
        try:
            return dict(api.inspect_container(summary["Id"]))
        except NotFound:  # removed between the listing and now
            continue
    return None


def create_container(
    api: docker.APIClient,
    config: DockerComputeConfig,
    *,
    image: str,
    command: Sequence[str],
    environment: Mapping[str, str],
    workspace: str,
    run_id: str,
) -> str:
    """Create (not start) the run's container; its id."""
    host_config = api.create_host_config(
        network_mode=config.network_mode,
        nano_cpus=config.nano_cpus,
        mem_limit=config.memory_bytes,
        # No swap beyond the limit: a memory limit that swaps instead of failing hides the problem.
        memswap_limit=config.memory_bytes,
        init=True,  # PID 1 reaps what the script leaves behind and passes on SIGTERM
    )
    created = api.create_container(
        image,
        command=list(command),
        environment=dict(environment),
        labels={LABEL_KIND: "run", LABEL_WORKSPACE: workspace, LABEL_RUN_ID: run_id},
        name=container_name(run_id),
        working_dir=WORK_DIR,
        user=config.user or "",
        host_config=host_config,
        stop_timeout=config.stop_timeout,
    )
    return str(created["Id"])


def is_running(info: Mapping[str, Any] | None) -> bool:
    return bool(info and (info.get("State") or {}).get("Running"))


def started_at(info: Mapping[str, Any]) -> float | None:
    """The container's start as a POSIX timestamp (None when it has not started)."""
    text = str((info.get("State") or {}).get("StartedAt") or "")
    if not text or text.startswith("0001-"):
        return None
    # Docker gives nanoseconds ('2026-12-03T14:20:01.123456789Z'); datetime takes microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00").timestamp()
    except ValueError:
        return None


def stream_logs(api: docker.APIClient, container_id: str, stream: str, batcher: LogBatcher,
                tail: Tail | None = None, *, since: float | None = None) -> None:
    """Follow one output stream of the container into the run log until the container ends.

    Runs in a thread of its own per stream. ``since`` (a POSIX time): only output from then on,
    for a supervisor that reattaches (else all of it).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        chunks = api.logs(container_id, stdout=stream == "stdout", stderr=stream == "stderr",
                          stream=True, follow=True, **({"since": since} if since is not None else {}))
        for chunk in chunks:
            text = decoder.decode(chunk)
            if text:
                batcher.write(stream, text)
                if tail is not None:
                    tail.feed(text)
        rest = decoder.decode(b"", final=True)
        if rest:
            batcher.write(stream, rest)
    except Exception:
        # The run's end is told by the container's state, not by its log: a lost log stream
        # (engine restart) must not fail a script that is still running.
        log.warning("Following the %s of container %s stopped", stream, container_id[:12], exc_info=True)


def copy_outputs(api: docker.APIClient, container_id: str, dest: Path) -> bool:
    """Copy ``outputs/`` of the container's working folder into ``dest/outputs``; False if none."""
    from docker.errors import NotFound

    try:
        chunks, _stat = api.get_archive(container_id, f"{WORK_DIR}/outputs")
    except NotFound:
        return False
    buffer = io.BytesIO(b"".join(chunks))  # outputs are uploaded whole anyway
    with tarfile.open(fileobj=buffer) as tar:
        # "data": no absolute paths, links out of dest, devices or setuid bits from the container.
        tar.extractall(dest, filter="data")
    return True


def remove_container(api: docker.APIClient, container_id: str) -> None:
    from docker.errors import APIError, NotFound

    try:
        api.remove_container(container_id, force=True)
    except NotFound:
        pass
    except APIError:
        log.warning("Could not remove container %s", container_id[:12], exc_info=True)
