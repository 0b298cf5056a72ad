"""The autoscaler's decisions, with time and load given explicitly."""

from __future__ import annotations

from airflow_aml.deployments.autoscale import Autoscaler
from airflow_aml.deployments.config import AutoscaleConfig


def _scaler(**kwargs: object) -> Autoscaler:
    config = AutoscaleConfig(**{"min_replicas": 1, "max_replicas": 4, "target_utilization": 0.5,
                                "window_seconds": 10, "scale_down_delay_seconds": 30, **kwargs})
    return Autoscaler(config, max_concurrent_per_replica=4)


def _feed(scaler: Autoscaler, start: float, seconds: int, inflight: int) -> float:
    for t in range(seconds):
        scaler.observe(start + t, inflight)
    return start + seconds


def test_scales_up_at_once_by_the_hpa_rule() -> None:
    scaler = _scaler()
    now = _feed(scaler, 0, 5, inflight=6)  # 6 of 4 busy = 150 % of one replica, target 50 %
    assert scaler.decide(now, 1) == 3  # ceil(1 x 1.5 / 0.5)
    assert scaler.utilization == 1.5


def test_never_beyond_the_bounds() -> None:
    scaler = _scaler(max_replicas=2)
    now = _feed(scaler, 0, 5, inflight=40)
    assert scaler.decide(now, 1) == 2
    assert _scaler(min_replicas=2).decide(0, 1) == 2  # below min: up at once, even without samples
    assert _scaler().decide(0, 9) == 4


def test_scales_down_only_after_the_delay() -> None:
    scaler = _scaler(scale_down_delay_seconds=30)
    now = _feed(scaler, 0, 10, inflight=0)
    assert scaler.decide(now, 3) == 3  # low since now
    now = _feed(scaler, now, 20, inflight=0)
    assert scaler.decide(now, 3) == 3  # 20 s < 30 s
    now = _feed(scaler, now, 11, inflight=0)
    assert scaler.decide(now, 3) == 1


def test_a_burst_resets_the_scale_down_clock() -> None:
    scaler = _scaler(scale_down_delay_seconds=5, window_seconds=2)
    now = _feed(scaler, 0, 3, inflight=0)
    assert scaler.decide(now, 2) == 2
    now = _feed(scaler, now, 3, inflight=4)  # exactly on target for 2 replicas: 4 / 8 = 50 %
    assert scaler.decide(now, 2) == 2
    now = _feed(scaler, now, 3, inflight=0)
    assert scaler.decide(now, 2) == 2  # the clock restarted
    now = _feed(scaler, now, 6, inflight=0)
    assert scaler.decide(now, 2) == 1


def test_within_tolerance_nothing_moves() -> None:
    scaler = _scaler(max_replicas=8)
    for t in range(10):  # 10.5 of 20 busy on average: 52.5 %, 5 % above the target
        scaler.observe(t, 10 + t % 2)
    assert scaler.decide(10, 5) == 5  # without the tolerance: ceil(5 x 1.05) = 6
    scaler.observe(11, 20)
    scaler.observe(12, 20)
    assert scaler.decide(12, 5) == 7  # 12.4 of 20 busy: ceil(5 x 0.62 / 0.5)
