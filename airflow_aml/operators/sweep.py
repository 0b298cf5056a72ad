"""What the task log shows of a sweep: each child's lines with its label, then a table of the
children and the best one's metrics (the parent logs no metrics of its own)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from airflow_aml.runs import Run

SWEEP_TAG_PREFIX = "sweep."


def child_label(child: Run) -> str:
    """``<run id> C=0.5``: the run and its grid point (the ``sweep.<param>`` tags)."""
    point = " ".join(f"{k[len(SWEEP_TAG_PREFIX):]}={v}" for k, v in sorted(child.record.tags.items())
                     if k.startswith(SWEEP_TAG_PREFIX))
    return f"{child.id} {point}".strip()


def scalar_metrics(run: Run) -> dict[str, float]:
    return {k: float(v) for k, v in run.get_metrics().items() if isinstance(v, int | float)}


def summary_lines(parent: Run, children: Sequence[Run], *, primary_metric: str | None, goal: str) -> list[str]:
    """The children's table (grid point, status, scalar metrics) and the best child by
    ``primary_metric`` (``goal`` ``"maximize"`` or ``"minimize"``; the first of equals wins)."""
    metrics = {child.id: scalar_metrics(child) for child in children}
    names = sorted({name for values in metrics.values() for name in values})
    header = ["child run", "status", *names]
    rows = [[child_label(child), child.record.status.value, *(_cell(metrics[child.id].get(n)) for n in names)]
            for child in children]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"Sweep {parent.id}: {len(children)} child runs"]
    lines += ["  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in [header, *rows]]
    if not primary_metric:
        lines.append("Set primary_metric= to name the best child run")
        return lines
    best: Run | None = None
    for child in children:
        value = metrics[child.id].get(primary_metric)
        if value is None or math.isnan(value):
            continue
        held = None if best is None else metrics[best.id][primary_metric]
        if held is None or (value > held if goal == "maximize" else value < held):
            best = child
    if best is None:
        lines.append(f"No child run logged {primary_metric!r}")
    else:
        lines.append(f"Best child by {primary_metric} ({goal}): {child_label(best)}; metrics: {metrics[best.id]}")
    return lines


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
