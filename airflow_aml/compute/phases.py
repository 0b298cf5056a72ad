"""How a run's supervisor reports where the run is: activity progress per phase, control lines.

Shared by the supervisor of one run and a sweep's parent (which spreads RUNNING..FINALIZING over
its children), so that neither imports the other.
"""

from __future__ import annotations

import logging

from airflow_aml.compute.logstream import LogBatcher

log = logging.getLogger("airflow_aml.compute.run_supervisor")

CONTROL = "control"  # the run log's stream of the supervisor's own lines
PROGRESS_PREPARING = 0.1
PROGRESS_ENVIRONMENT = 0.2
PROGRESS_RUNNING = 0.3
PROGRESS_FINALIZING = 0.95


def control(batcher: LogBatcher, message: str) -> None:
    """A supervisor progress line: in the run's ``control`` log stream and the supervisor log."""
    log.info("[%s] %s", batcher.run_id, message)
    batcher.line(CONTROL, message)
