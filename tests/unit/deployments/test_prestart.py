"""A local create's replicas started before the supervisor's set-up (``supervisor/prestart.py``):
only for a create, adopted by the rollout when the template matches, stopped otherwise, and
able to take SIGTERM although the supervisor starts them while it blocks it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.deployments.supervisor.prestart import PrestartedReplicas, prestart_replicas


def _fake_python(tmp_path: Path) -> str:
    """An "interpreter" that ignores the scoring server's arguments and waits: a replica that lives."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\nexec sleep 30\n")
    path.chmod(0o755)
    return str(path)


def _desired(folder: Path, tmp_path: Path, **changes: Any) -> dict[str, Any]:
    doc = {
        "workspace": "ws", "name": "svc", "target": "local", "generation": 1, "operation": "create",
        "activity_id": None, "image": {"id": "img:1", "bundle": str(tmp_path), "python": _fake_python(tmp_path)},
        "config": {"replicas": 2, "autoscale": None, "cpu_cores": None, "memory_gb": None}, "port": 1,
    }
    doc.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "desired.json").write_text(json.dumps(doc))
    return doc


def _template(doc: dict[str, Any]) -> dict[str, Any]:
    return {"image": doc["image"], "cpu_cores": None, "memory_gb": None}


def _blocked_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.parametrize("changes", [{"operation": "update"}, {"operation": "restore"}, {"target": "docker"}])
def test_only_a_local_create_is_started_ahead(tmp_path: Path, changes: dict[str, Any]) -> None:
    folder = tmp_path / "dep"
    _desired(folder, tmp_path, **changes)
    assert prestart_replicas(folder).started == []
    assert not (folder / "logs").exists()  # nothing was spawned


def test_an_unreadable_desired_state_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "desired.json").write_text("{not json")
    assert prestart_replicas(tmp_path).started == []


def test_the_rollout_adopts_matching_replicas_and_the_rest_are_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "dep"
    doc = _desired(folder, tmp_path)
    ahead = prestart_replicas(folder)
    try:
        assert [p.spec.index for p in ahead.started] == [0, 1] and ahead.next_index == 2
        replicas = [p.replica for p in ahead.started]
        assert all(r.alive() for r in replicas)
        assert ahead.take(_template(doc), generation=2) is None  # another generation
        assert ahead.take({**_template(doc), "cpu_cores": 1.0}, generation=1) is None  # other limits
        other_image = {**_template(doc), "image": {**doc["image"], "id": "img:2"}}
        assert ahead.take(other_image, generation=1) is None
        taken = ahead.take(_template(doc), generation=1)
        assert taken is not None and taken.spec.index == 0 and len(ahead.started) == 1
        ahead.release()
        assert ahead.started == []
        deadline = time.monotonic() + 10
        while replicas[1].alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not replicas[1].alive() and taken.replica.alive()  # the adopted one is the rollout's now
    finally:
        for replica in replicas:
            replica.stop(timeout=0)


def test_a_replica_started_while_sigterm_is_blocked_can_take_it(tmp_path: Path) -> None:
    folder = tmp_path / "dep"
    _desired(folder, tmp_path, config={"replicas": 1})
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as the supervisor starts
    try:
        ahead = prestart_replicas(folder)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    [item] = ahead.started
    try:
        pid = item.replica.describe()["pid"]
        assert _blocked_signals(pid) & (1 << (signal.SIGTERM - 1)) == 0
    finally:
        PrestartedReplicas([item]).release()
