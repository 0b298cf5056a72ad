"""A create's replicas started before the supervisor's own set-up (issue 16: deploy -> first 200).

The supervisor's machinery (the store, the front, uvicorn, pydantic) takes ~1 s to import and
its first store round-trips ~1 s more, and a replica (its server's imports, then ``init()``
loading the model) needs none of it. So on a ``create`` of the ``local`` target the replicas
``desired.json`` asks for are started first, from the raw file and with light imports only, and
both processes' start-ups overlap on separate cores. The rollout then adopts them
(``take``) instead of starting new ones; one it does not adopt (the template differs, the
deployment is gone) is stopped (``release``). Updates, restores and other targets start as before:
they may have replicas serving, which the rollout must see first.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_aml.deployments.paths import DESIRED_FILE, SCORING_CONFIG, replica_log
from airflow_aml.deployments.replicas import LocalProcessDriver, Replica, ReplicaSpec, free_port

log = logging.getLogger(__package__)  # the supervisor's one logger

_MAX_PRESTART = 64  # DeploymentConfig's own upper bound on replicas


@dataclass
class Prestarted:
    generation: int
    spec: ReplicaSpec
    replica: Replica
    started_at: float


class PrestartedReplicas:
    """The replicas started ahead, until the rollout adopts or releases them."""

    def __init__(self, started: list[Prestarted] | None = None) -> None:
        self.started = list(started or [])

    @property
    def next_index(self) -> int:
        return max((p.spec.index for p in self.started), default=-1) + 1

    def take(self, template: dict[str, Any], generation: int) -> Prestarted | None:
        """One started for ``generation`` with what ``template`` gives a replica's command line
        and limits (image, CPU, memory; the rest is in scoring.json), or None."""
        for item in self.started:
            spec = item.spec
            if (item.generation == generation and spec.image == template["image"]
                    and spec.cpu_cores == template["cpu_cores"] and spec.memory_gb == template["memory_gb"]):
                self.started.remove(item)
                return item
        return None

    def release(self) -> None:
        """Stop every replica not adopted (killed at once: none served a request)."""
        for item in self.started:
            log.info("Stopping replica %s started ahead and not used", item.spec.label)
            item.replica.stop(timeout=0)
        self.started.clear()


def replica_spec(
    folder: Path, workspace: str, deployment: str, generation: int, index: int, image: dict[str, Any],
    cpu_cores: float | None, memory_gb: float | None,
) -> ReplicaSpec:
    """What a new replica of the deployment in ``folder`` runs with, on a free port."""
    return ReplicaSpec(
        workspace=workspace, deployment=deployment, generation=generation, index=index, port=free_port(),
        image=dict(image), config_dir=(folder / SCORING_CONFIG).parent,
        log_path=replica_log(folder, generation, index), cpu_cores=cpu_cores, memory_gb=memory_gb,
    )


def prestart_replicas(folder: Path) -> PrestartedReplicas:
    """Start a local create's replicas now (see the module docstring); none when it is not one."""
    try:
        doc = json.loads((folder / DESIRED_FILE).read_text(encoding="utf-8"))
        if doc.get("operation") != "create" or doc.get("target") != LocalProcessDriver.kind:
            return PrestartedReplicas()
        config = dict(doc.get("config") or {})
        autoscale = config.get("autoscale")
        count = int(autoscale["min_replicas"] if autoscale else config.get("replicas", 1))
        generation, image = int(doc["generation"]), dict(doc["image"])
    except (OSError, ValueError, KeyError, TypeError):
        return PrestartedReplicas()  # the supervisor's own reading reports what is wrong
    driver = LocalProcessDriver()
    started: list[Prestarted] = []
    for index in range(max(1, min(count, _MAX_PRESTART))):
        spec = replica_spec(folder, str(doc.get("workspace")), str(doc.get("name")), generation, index, image,
                            config.get("cpu_cores"), config.get("memory_gb"))
        try:
            replica = driver.start(spec)
        except Exception as exc:  # the rollout starts it again and reports the error
            log.warning("Could not start replica %s ahead: %s", spec.label, exc)
            break
        log.info("Started replica %s ahead on port %s (%s)", spec.label, spec.port, replica.describe())
        started.append(Prestarted(generation, spec, replica, time.time()))
    return PrestartedReplicas(started)
