"""What the provider's sensors share: the hook, deferral and a reschedule interval that is safe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, conf

from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.triggers.settle import DEFAULT_DEFER_AFTER, settle_seconds


class AmlBaseSensor(BaseSensorOperator):
    """Base of the provider's sensors.

    :param deferrable: wait in the triggerer (the shared ``AmlActivityTrigger``) after ``defer_after``.
    :param defer_after: with ``deferrable``, seconds to wait in the task first: what ends by then
        never defers.

    In ``mode="reschedule"`` the next poke is never sooner than ``settle_seconds()`` (15 s by
    default): a poke queued sooner can meet the previous one's late exit report, and Airflow
    fails it (``triggers/settle.py``).
    """

    def __init__(
        self,
        *,
        aml_conn_id: str = AmlWorkspaceHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        defer_after: float = DEFAULT_DEFER_AFTER,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aml_conn_id = aml_conn_id
        self.deferrable = deferrable
        self.defer_after = defer_after

    @cached_property
    def hook(self) -> AmlWorkspaceHook:
        return AmlWorkspaceHook(aml_conn_id=self.aml_conn_id)

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int,
    ) -> float:
        interval = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        if not self.reschedule:
            return interval
        floor = settle_seconds()
        if interval < floor:
            self.log.info("Next poke in %.0f s rather than %.0f s: a reschedule sooner than that can "
                          "make Airflow fail the next poke (see the README on reschedule mode)", floor, interval)
            return floor
        return interval
