"""``airflow-aml run ...``: submit runs and look at them."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import (
    JsonOption,
    fail,
    fmt,
    fmt_duration,
    fmt_metric,
    fmt_time,
    info,
    latest_metric,
    parse_pairs,
    print_error,
    print_fields,
    print_json,
    print_table,
    state,
    want_json,
)
from airflow_aml.cli._run_filters import RunFilters, why_no_runs
from airflow_aml.exceptions import ValidationError

if TYPE_CHECKING:
    from airflow_aml.entities import RunRecord
    from airflow_aml.runconfig import RunConfiguration
    from airflow_aml.runs import Run
    from airflow_aml.workspace import Experiment

run_app = AmlTyper(help="Submit runs and inspect their status, logs, metrics and files.")

RunIdArg = Annotated[str, typer.Argument(help="Run id.")]
ExperimentOption = Annotated[str, typer.Option("--experiment", "-e", help="Experiment name.")]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=0, metavar="SECONDS", help="Give up waiting after this many seconds (exit 1)."),
]
TagsOption = Annotated[
    list[str] | None, typer.Option("--tag", metavar="KEY=VALUE", help="key=value (repeat for more).")
]


def _get_run(run_id: str) -> Run:
    return state().workspace().get_run(run_id)


def _existing_experiment(name: str) -> Experiment:
    """The experiment, or ExperimentNotFoundError (the SDK's queries return [] for unknown names)."""
    return state().workspace().get_experiment(name)


def _status(value: str) -> str:
    """``completed`` -> ``Completed``; unknown values go to the SDK, which lists the valid ones."""
    from airflow_aml.entities import RunStatus

    return {s.value.lower(): s.value for s in RunStatus}.get(value.lower(), value)


def _run_config(source_dir: Path, value: str) -> RunConfiguration:
    """``--run-config``: a YAML file, or NAME of ``SOURCE_DIR/.aml/NAME.runconfig.yml``."""
    from airflow_aml.runconfig import RunConfiguration

    path = Path(value)
    if path.suffix in (".yml", ".yaml") or len(path.parts) > 1 or path.is_file():
        return RunConfiguration.from_yaml(path)
    return RunConfiguration.load(source_dir, value)


def _time(iso: str | None) -> str:
    return fmt_time(datetime.fromisoformat(iso)) if iso else ""


def _summary(record: RunRecord, metrics: dict[str, float]) -> dict[str, Any]:
    """One run of ``run list --json``, with the keys of ``Run.get_details()``."""
    return {
        "runId": record.run_id,
        "experiment": record.experiment,
        "parentRunId": record.parent_run_id,
        "displayName": record.display_name,
        "status": record.status.value,
        "target": record.compute_target,
        "submittedBy": record.submitted_by,
        "createdTimeUtc": record.created_at,
        "startTimeUtc": record.start_time,
        "endTimeUtc": record.end_time,
        "durationSeconds": record.duration_seconds,
        "tags": dict(record.tags),
        "metrics": metrics,
    }


# ------------------------------------------------------------------------------------------ submit
@run_app.command("submit")
def submit(
    source_dir: Annotated[Path, typer.Argument(help="Source directory; snapshotted and run.")],
    script: Annotated[str | None, typer.Option("--script", help="Script to run, relative to SOURCE_DIR.")] = None,
    arguments: Annotated[
        list[str] | None,
        typer.Option(
            "--arg", metavar="ARG", help="An argument of the script (repeat for more; write --arg=--lr for options)."
        ),
    ] = None,
    run_config: Annotated[
        str | None,
        typer.Option(
            "--run-config",
            metavar="FILE|NAME",
            help="A run configuration YAML file, or NAME of SOURCE_DIR/.aml/NAME.runconfig.yml.",
        ),
    ] = None,
    experiment: ExperimentOption = "default",
    target: Annotated[
        str | None, typer.Option("--target", help="Compute target (default: the run configuration's, else local).")
    ] = None,
    tags: TagsOption = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="A human name for the run.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the run to end; exit 1 unless it Completed.")
    ] = False,
    show_output: Annotated[
        bool | None,
        typer.Option(
            "--show-output/--no-show-output",
            help="Stream the run's log while waiting (default with --wait; implies --wait).",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    json_output: JsonOption = False,
) -> None:
    """Submit SOURCE_DIR as a run of an experiment; prints the run id."""
    from airflow_aml.runconfig import RunConfiguration

    if (script is None) == (run_config is None):
        raise ValidationError("Give exactly one of --script or --run-config")
    if script is not None:
        fields: dict[str, Any] = {"script": script, "arguments": list(arguments or ())}
        if target:
            fields["target"] = target
        config = RunConfiguration.from_dict(fields, source="--script/--arg/--target options")
    else:
        if arguments:
            raise ValidationError("--arg goes with --script; put the arguments of --run-config in its YAML file")
        config = _run_config(source_dir, run_config)  # type: ignore[arg-type]
        if target:
            config = RunConfiguration.from_dict({**config.to_dict(), "target": target}, source="--target option")
    tag_map = parse_pairs(tags, "--tag")

    ws = state().workspace()
    run = ws.experiment(experiment).submit(source_dir, config, tags=tag_map, display_name=display_name)
    as_json = want_json(json_output)
    if not as_json:
        typer.echo(run.id)
    info(f"Submitted run {run.id} to experiment {run.experiment!r} (target {config.target!r})")
    if not (wait or show_output):
        if as_json:
            print_json(run.get_details())
        return
    stream = show_output is not False
    # JSON mode: the log goes to stderr, so that stdout holds only the final JSON document.
    redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with redirect:
            details = run.wait_for_completion(show_output=stream, timeout=timeout)
    except KeyboardInterrupt:
        print_error(f"Interrupted; run {run.id} keeps running (stop it with: airflow-aml run cancel {run.id})")
        raise typer.Exit(130) from None
    if as_json:
        print_json(details)
    info(f"Run {run.id} {details['status']}")


# ------------------------------------------------------------------------------------------ querying
@run_app.command("list")
def list_runs(
    experiment: ExperimentOption,
    status: Annotated[
        list[str] | None, typer.Option("--status", metavar="STATUS", help="Only runs in this status (repeatable).")
    ] = None,
    tags: TagsOption = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", metavar="'NAME OP VALUE'", help="A condition on a metric, e.g. 'accuracy >= 0.9' (repeatable)."
        ),
    ] = None,
    order_by: Annotated[
        str | None, typer.Option("--order-by", help="Order by the latest value of this metric.")
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="Ascending order (default: descending).")] = False,
    include_children: Annotated[
        bool,
        typer.Option(
            "--include-children",
            "--children",
            help="Include child runs (a sweep's trials); default: top-level runs only.",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, metavar="N", help="At most N runs.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the runs of an experiment, newest first or ordered by a metric."""
    from airflow_aml.experiment import parse_metric_condition

    exp = _existing_experiment(experiment)
    conditions = [parse_metric_condition(m) for m in metrics or ()]
    filters = RunFilters(
        status=[_status(value) for value in status or ()], tags=parse_pairs(tags, "--tag"), metrics=conditions
    )
    runs = exp.search_runs(
        **filters.search_kwargs(),
        order_by=order_by,
        descending=not asc,
        include_children=include_children,
        max_results=limit,
    )
    records = [run.record for run in runs]
    if not records:  # say why instead of an empty table (stderr: stdout stays "[]" with --json)
        info(why_no_runs(exp, filters, include_children=include_children))
        if not want_json(json_output):
            return
    latest = exp.workspace.store.get_latest_scalar_metrics([r.run_id for r in records]) if records else {}
    if want_json(json_output):
        print_json([_summary(r, latest.get(r.run_id, {})) for r in records])
        return
    metric_names = list(dict.fromkeys([*([order_by] if order_by else []), *(c.metric for c in conditions)]))
    columns = [
        "Run ID",
        *(["Parent"] if include_children else []),
        "Status",
        "Started",
        "Duration",
        "Tags",
        *metric_names,
    ]
    rows = [
        [
            r.run_id,
            *([r.parent_run_id or ""] if include_children else []),
            r.status.value,
            fmt_time(r.start_time),
            fmt_duration(r.duration_seconds),
            fmt(r.tags),
            *(latest.get(r.run_id, {}).get(m) for m in metric_names),
        ]
        for r in records
    ]
    print_table(f"Runs of {exp.name}", columns, rows)


@run_app.command("show")
def show(run_id: RunIdArg, json_output: JsonOption = False) -> None:
    """Details of a run: status, times, tags, properties, params, error, latest metrics."""
    run = _get_run(run_id)
    details = run.get_details()
    metrics = run.get_metrics()
    children = [child.id for child in run.get_children()]
    if want_json(json_output):
        print_json(
            {**details, "latestMetrics": {k: latest_metric(v) for k, v in metrics.items()}, "children": children}
        )
        return
    definition = details.get("runDefinition") or {}
    command = (
        " ".join([str(definition["script"]), *map(str, definition.get("arguments", ()))])
        if definition.get("script")
        else ""
    )
    print_fields(
        f"Run {run.id}",
        [
            ("Run ID", details["runId"]),
            ("Experiment", details["experiment"]),
            ("Parent", details["parentRunId"]),
            ("Status", details["status"]),
            ("Target", details["target"]),
            ("Script", command),
            ("Submitted by", details["submittedBy"]),
            ("Created", _time(details["createdTimeUtc"])),
            ("Started", _time(details["startTimeUtc"])),
            ("Ended", _time(details["endTimeUtc"])),
            ("Duration", fmt_duration(details["durationSeconds"])),
            ("Tags", fmt(details["tags"])),
            ("Properties", fmt(details["properties"])),
            ("Params", fmt(details["params"])),
            ("Snapshot", details["snapshotSha256"]),
            ("Children", "\n".join(children)),
            ("Error", details["error"]),
        ],
    )
    if metrics:
        print_table(
            "Latest metrics", ["Metric", "Value"], [(k, fmt_metric(v, latest=True)) for k, v in metrics.items()]
        )


@run_app.command("logs")
def logs(
    run_id: RunIdArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, metavar="SECONDS", help="Seconds between polls with --follow.")
    ] = 1.0,
    timeout: TimeoutOption = None,
) -> None:
    """Print a run's log (stdout and stderr of its script)."""
    run = _get_run(run_id)
    if follow:
        run.wait_for_completion(show_output=True, raise_on_error=False, poll_interval=interval, timeout=timeout)
    else:
        sys.stdout.write(run.get_log_text())
    sys.stdout.flush()


@run_app.command("metrics")
def metrics(
    run_id: RunIdArg,
    name: Annotated[str | None, typer.Option("--name", help="Only this metric.")] = None,
    json_output: JsonOption = False,
) -> None:
    """The metrics a run logged (series, tables and images included)."""
    values = _get_run(run_id).get_metrics(name)
    if want_json(json_output):
        print_json(values)
        return
    print_table(f"Metrics of {run_id}", ["Metric", "Value"], [(k, fmt_metric(v)) for k, v in values.items()])


@run_app.command("best")
def best(
    experiment: ExperimentOption,
    metric: Annotated[str, typer.Option("--metric", metavar="NAME", help="The metric to compare.")],
    goal: Annotated[str, typer.Option("--goal", help="maximize or minimize.")] = "maximize",
    json_output: JsonOption = False,
) -> None:
    """The completed run with the best latest value of a metric; prints its id."""
    exp = _existing_experiment(experiment)
    run = exp.best_run(metric, goal=goal)
    if run is None:
        fail(f"No completed run of experiment {exp.name!r} logged metric {metric!r}")
    value = latest_metric(run.get_metrics(metric).get(metric))
    if want_json(json_output):
        print_json({"runId": run.id, "experiment": exp.name, "metric": metric, "goal": goal, "value": value})
        return
    typer.echo(run.id)
    info(f"{metric} = {fmt(value)}")


@run_app.command("reap")
def reap(
    lost_after: Annotated[
        float | None,
        typer.Option(
            "--lost-after",
            min=1,
            metavar="SECONDS",
            help="Heartbeat silence that counts as lost (default: $AML_RUN_LOST_AFTER_SECONDS, 90).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Fail the runs whose supervisor stopped beating (killed, out of memory, a reboot)."""
    ws = state().workspace()
    reaped = ws.reap_lost_runs(lost_after=lost_after)
    if want_json(json_output):
        print_json(reaped)
        return
    for run_id in reaped:
        typer.echo(run_id)
    info(f"{len(reaped)} lost run(s) failed in workspace {ws.name!r}" if reaped else "No lost run")


@run_app.command("cancel")
def cancel(run_id: RunIdArg) -> None:
    """Cancel a run (its compute target stops the script)."""
    run = _get_run(run_id)
    before = run.status
    if before.is_terminal:
        info(f"Run {run.id} already ended {before.value}")
        return
    run.cancel()
    typer.echo(f"Run {run.id}: {run.status.value}")


# ------------------------------------------------------------------------------------------ files
@run_app.command("files")
def files(run_id: RunIdArg, json_output: JsonOption = False) -> None:
    """List the files of a run (outputs/, logs/, images/ ...)."""
    names = _get_run(run_id).get_file_names()
    if want_json(json_output):
        print_json(names)
        return
    for file_name in names:
        typer.echo(file_name)


@run_app.command("download")
def download(
    run_id: RunIdArg,
    prefix: Annotated[str, typer.Option("--prefix", help="Folder of the run to download ('' for all).")] = "outputs",
    output: Annotated[Path, typer.Option("--output", "-o", help="Local folder.")] = Path("."),
    json_output: JsonOption = False,
) -> None:
    """Download a run's files below a prefix, keeping their paths."""
    paths = _get_run(run_id).download_files(prefix, output)
    if want_json(json_output):
        print_json(paths)
        return
    for path in paths:
        typer.echo(str(path))
    info(f"Downloaded {len(paths)} file(s) into {output}")


@run_app.command("snapshot")
def snapshot(
    run_id: RunIdArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to restore the source files into.")],
) -> None:
    """Restore the source directory a run was submitted with."""
    names = _get_run(run_id).restore_snapshot(output)
    info(f"Restored {len(names)} file(s) of run {run_id} into {output}")
