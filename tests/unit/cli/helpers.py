"""Assertions and builders the CLI tests share."""

from __future__ import annotations

from collections.abc import Callable

from typer.testing import Result

from airflow_aml.runtime.run import Run
from airflow_aml.workspace import Workspace

WS = "ws"

Invoke = Callable[..., Result]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result: Result, *needles: str) -> None:
    """Exit code 1, one ``Error: ...`` line on stderr naming every needle, nothing on stdout."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]


def finished_run(
    ws: Workspace,
    experiment: str = "exp",
    *,
    accuracy: float | None = None,
    tags: dict[str, str] | None = None,
    parent: Run | None = None,
) -> Run:
    """A run logged in this process (no compute target), Completed."""
    run = parent.child_run(tags=tags) if parent else ws.experiment(experiment).start_logging(tags=tags)
    if accuracy is not None:
        run.log("accuracy", accuracy)
    run.complete()
    return run
