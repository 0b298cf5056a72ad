from __future__ import annotations

import math
import random

import pytest

from airflow_aml.service.downsample import lttb


def test_100000_points_become_at_most_1000_keeping_ends_and_extremes() -> None:
    generator = random.Random(13)
    xs = [float(step) for step in range(100_000)]
    ys = [math.sin(step / 500) + generator.gauss(0, 0.1) for step in range(100_000)]
    ys[31_337] = 25.0  # one spike up, one down: a chart must not hide them
    ys[77_001] = -25.0
    kept = lttb(xs, ys, 1000)
    assert 990 <= len(kept) <= 1000
    assert kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] == 99_999
    assert 31_337 in kept and 77_001 in kept
    # Spread over the whole series, not bunched: every 1% of the steps has points.
    assert {index * 100 // 100_000 for index in kept} == set(range(100))


def test_short_series_and_bad_sizes() -> None:
    assert lttb([0, 1, 2], [1.0, 2.0, 3.0], 10) == [0, 1, 2]
    with pytest.raises(ValueError, match="max_points"):
        lttb([0, 1, 2, 3], [0.0] * 4, 2)


def test_nan_values_are_never_picked_as_extremes() -> None:
    ys = [float(i % 7) for i in range(5000)]
    ys[10] = math.nan
    kept = lttb(list(range(5000)), ys, 100)
    assert len(kept) <= 100 and 10 not in kept
