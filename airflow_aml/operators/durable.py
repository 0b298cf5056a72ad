"""Durable execution (Airflow 3.3's ``ResumableJobMixin``, AIP-103) for operators whose work is
one workspace activity: a run, an image build, a deployment create or update.

The activity's id goes to the task instance's ``task_state_store`` as soon as the work exists.
A retry (a worker that crashed, was OOM-killed or lost its machine; the task cleared in the UI)
reads it back and, instead of starting anything:

- reattaches to the activity while it goes on (a run keeps training in its own supervisor),
- returns the result at once when it Succeeded,
- starts again when it Failed, was Canceled or no longer exists (deleted, another workspace).

The idempotency key (``operators.base.idempotency_key``) stays underneath as the second line:
it covers the moment between creating the work and writing its id to the task state (the
mixin's documented window), two copies of one task instance running at once, and
``durable=False``. Both lead to the same run, version or update; the task state only makes the
retry skip re-validating and re-planning, and say in its log what it reattached to.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ResumableJobMixin

from airflow_aml.entities import ActivityStatus
from airflow_aml.exceptions import NotFoundError
from airflow_aml.operators.base import AmlBaseOperator

# The status of an activity that is gone: not active, not succeeded, so the mixin starts afresh.
MISSING = "Missing"
ACTIVE = frozenset({ActivityStatus.NOT_STARTED.value, ActivityStatus.RUNNING.value})
_UNSET: Any = object()


class AmlDurableOperator(ResumableJobMixin, AmlBaseOperator):
    """Base of the operators that start one activity and follow it.

    Subclasses implement ``submit_job(context)`` (validate, create the work, return its activity
    id) and ``follow(activity_id, context)`` (wait for it here or defer, then return the task's
    result; on an activity that already ended it only builds the result).

    :param durable: keep the activity's id in Airflow's task state so that a retry reattaches to
        it (default True); False relies on the idempotency key alone.
    """

    external_id_key = "aml_activity_id"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._job_result: Any = _UNSET

    def execute(self, context: Any) -> Any:
        self._job_result = _UNSET
        return self.execute_resumable(context)

    def follow(self, activity_id: str, context: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ ResumableJobMixin
    def get_job_status(self, external_id: Any, context: Any) -> str:
        """The activity's status now. One look through the SDK's waiter, so that work whose
        process is gone (an inline build that died with the crashed worker) reads as Failed, not
        as Running for ever."""
        try:
            return self.hook.workspace.activity_waiter(str(external_id)).poll().status.value
        except NotFoundError:
            return MISSING

    def is_job_active(self, status: str) -> bool:
        return status in ACTIVE

    def is_job_succeeded(self, status: str) -> bool:
        return status == ActivityStatus.SUCCEEDED.value

    def poll_until_complete(self, external_id: Any, context: Any) -> Any:
        # The mixin returns this value itself when it reattaches, so it is the task's result.
        self._job_result = self.follow(str(external_id), context)
        return self._job_result

    def get_job_result(self, external_id: Any, context: Any) -> Any:
        if self._job_result is _UNSET:  # the work had ended before this try: nothing to wait for
            self._job_result = self.follow(str(external_id), context)
        return self._job_result
