"""How long a task must stay away after handing over to Airflow (deferring or rescheduling).

Airflow 3 (3.0 to at least 3.3.2) has a race that fails a task which comes back quickly. When a
task defers or reschedules, its process tells the API server and exits; the task supervisor
notices the exit up to ``[workers] min_heartbeat_interval`` (5 s) later - its loop sleeps that
long in ``select`` when the exit lands just after the sockets close - and only then does the
executor report that try as finished ("success"). Should the task instance already be queued
again when the scheduler reads that stale report - the trigger fired, or the reschedule date
passed, in that window - the scheduler takes it for the new attempt's and fails it: "finished
with state success, but the task instance's state attribute is queued" (apache/airflow#71172,
#71194, #71502, #71579, #72716). Reported for issue 17: a deployment ready 4 s after it deferred.
Reproduced here: a reschedule-mode sensor poking every 5 s failed its first try in 3 DAG runs of 3,
and deferred sensors whose stale exit report reached the scheduler after the resumed try began.

So nothing of this provider brings a task back sooner than ``settle_seconds()`` after it handed
over: ``AmlActivityTrigger`` holds its event until the trigger has run that long (it only starts
once the deferral is recorded), reschedule-mode sensors never reschedule sooner, and the
deferrable operators wait in the task a while first, so that a short activity never defers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from airflow.sdk import conf

from airflow_aml.exceptions import WaitTimeoutError

# On top of twice the supervisor's sleep: the executor's report still has to reach the scheduler
# (its next loop), on a machine that may be busy. Measured here (2 cores, LocalExecutor, SQLite):
# the stale report is processed 1-7 s after the deferral.
MARGIN_SECONDS = 5.0

# The deferrable operators' and sensors' default in-task wait before they defer.
DEFAULT_DEFER_AFTER = 15.0


def settle_seconds() -> float:
    """Seconds after a task process handed over before the task may be queued again."""
    interval = conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0)
    return 2 * max(interval, 0.0) + MARGIN_SECONDS


def wait_briefly(
    wait: Callable[[float], Any], *, seconds: float, end_time: float | None,
    log: Callable[..., Any] | None = None,
) -> bool:
    """Before deferring, wait in the task up to ``seconds`` (not past ``end_time``, epoch seconds)
    with ``wait(timeout)``, an SDK waiter that raises WaitTimeoutError when not done. True when
    the activity ended: a short one then finishes without a deferral, which would cost a new
    task process and, if it ends soon after, a settle time."""
    budget = float(seconds or 0.0)
    if end_time is not None:
        budget = min(budget, max(0.0, end_time - time.time()))
    if budget <= 0:
        return False
    if log is not None:
        log("Deferrable: waiting up to %.0f s in the task before deferring", budget)
    try:
        wait(budget)
    except WaitTimeoutError:
        return False
    return True
