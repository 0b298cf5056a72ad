"""Downsampling of long metric series for charts: at most ``max_points`` of a series' points.

Largest-Triangle-Three-Buckets (LTTB, Steinarsson 2013) rather than min/max buckets: a chart of
~1,000 points then keeps the series' shape (each bucket's point is the one spanning the largest
triangle with its neighbours, so spikes survive) with one point per bucket, where min/max buckets
send two and draw a saw-tooth envelope. LTTB alone may drop a bucket's extreme, and a chart that
hides a run's best or worst value misleads, so the series' global minimum and maximum are put back
in place of their buckets' picks. First and last points are always kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def lttb(xs: Sequence[float], ys: Sequence[float], max_points: int) -> list[int]:
    """Indices (ascending) of at most ``max_points`` points of the series ``(xs, ys)`` (xs sorted)."""
    count = len(xs)
    if max_points < 3:
        raise ValueError(f"max_points must be >= 3 (first, last and one between), got {max_points}")
    if count <= max_points:
        return list(range(count))
    finite = [i for i in range(count) if not math.isnan(ys[i])]
    chosen = [0]
    every = (count - 2) / (max_points - 2)
    previous = 0
    for bucket in range(max_points - 2):
        start, end = int(bucket * every) + 1, int((bucket + 1) * every) + 1
        after_start, after_end = end, min(int((bucket + 2) * every) + 1, count)
        # The next bucket's average point is the triangle's third corner (the last point for the last bucket).
        span = [j for j in range(after_start, after_end) if not math.isnan(ys[j])] or [count - 1]
        avg_x = sum(xs[j] for j in span) / len(span)
        avg_y = sum(ys[j] for j in span) / len(span)
        px, py = xs[previous], ys[previous] if not math.isnan(ys[previous]) else 0.0
        best, best_area = start, -1.0
        for i in range(start, end):
            y = ys[i]
            if math.isnan(y):
                continue
            area = abs((px - avg_x) * (y - py) - (px - xs[i]) * (avg_y - py))
            if area > best_area:
                best, best_area = i, area
        chosen.append(best)
        previous = best
    chosen.append(count - 1)
    if finite:
        lowest = min(finite, key=lambda i: ys[i])
        highest = max(finite, key=lambda i: ys[i])
        for extreme in (lowest, highest):
            if extreme not in chosen:
                # Replace the pick of the extreme's own bucket (never the first or last point).
                bucket = min(max(int((extreme - 1) / every), 0), max_points - 3) + 1
                chosen[bucket] = extreme
    return sorted(set(chosen))
