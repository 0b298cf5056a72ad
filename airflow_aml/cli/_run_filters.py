"""Why ``run list`` found nothing: which filter left no run, and whether child runs would match.

An empty table with exit code 0 tells a user nothing; a sweep's metrics live on its child runs,
which ``run list`` leaves out by default, so the most common empty result is fixed by one flag.
The counts come from the same SDK search the listing used, one filter at a time.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_aml.entities import MetricCondition
    from airflow_aml.experiment import Experiment


@dataclasses.dataclass(frozen=True)
class RunFilters:
    """The filters of ``run list``, as the CLI options spell them."""

    status: list[str] = dataclasses.field(default_factory=list)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    metrics: list[MetricCondition] = dataclasses.field(default_factory=list)

    def search_kwargs(self) -> dict[str, Any]:
        return {"status": self.status or None, "tags": self.tags, "metrics": self.metrics}

    def one_by_one(self) -> list[tuple[str, dict[str, Any]]]:
        """Each filter alone, named as typed: ``("--metric 'accuracy >= 0.9'", {...})``."""
        singles: list[tuple[str, dict[str, Any]]] = []
        if self.status:
            singles.append((" ".join(f"--status {s}" for s in self.status), {"status": self.status}))
        for key, value in self.tags.items():
            singles.append((f"--tag {key}={value}", {"tags": {key: value}}))
        for condition in self.metrics:
            typed = f"{condition.metric} {condition.op} {condition.value:g}"
            singles.append((f"--metric '{typed}'", {"metrics": [condition]}))
        return singles

    @property
    def any(self) -> bool:
        return bool(self.status or self.tags or self.metrics)


def why_no_runs(experiment: Experiment, filters: RunFilters, *, include_children: bool) -> str:
    """One line: ``0 of 5 runs match; 4 child runs would: add --include-children`` and the like."""
    scope = "runs" if include_children else "top-level runs"
    total = len(experiment.search_runs(include_children=include_children))
    if total == 0:
        children = 0 if include_children else len(experiment.search_runs(include_children=True))
        hint = f" ({children} child runs: add --include-children)" if children else ""
        return f"Experiment {experiment.name!r} has no {scope}{hint}"
    parts = [f"0 of {total} {scope if total != 1 else scope[:-1]} match{'es' if total == 1 else ''}"]
    if not include_children:
        children = len(experiment.search_runs(**filters.search_kwargs(), include_children=True))
        if children:
            parts.append(f"{children} child run{'s' if children != 1 else ''} would: add --include-children")
            return "; ".join(parts)
    empty = [
        label
        for label, kwargs in filters.one_by_one()
        if not experiment.search_runs(**kwargs, include_children=include_children, max_results=1)
    ]
    if empty:
        parts.append(f"no {scope[:-1]} matches {', '.join(empty)}")
    elif filters.any:
        parts.append("each filter matches some, but no run matches them all")
    return "; ".join(parts)
