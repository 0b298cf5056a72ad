"""``airflow-aml deployments ...``: web services (an image served behind a key-protected scoring URI).

    airflow-aml deployments deploy iris-svc --image iris-scorer:2 --replicas 2
    airflow-aml deployments list
    airflow-aml deployments keys iris-svc
    airflow-aml deployments restore          # after a machine restart: supervisors back up

``show``, ``list`` and ``telemetry`` never print keys; ``keys`` and ``regenerate-key`` do (they need
a role that may read the workspace's secrets).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import (
    JsonOption,
    fmt,
    fmt_time,
    info,
    print_fields,
    print_json,
    print_table,
    state,
    want_json,
)
from airflow_aml.exceptions import ValidationError

if TYPE_CHECKING:
    from airflow_aml.deployments import Deployment
    from airflow_aml.deployments.config import DeploymentConfig

deployments_app = AmlTyper(help="Deploy images as web services and operate them (keys, logs, telemetry, restore).")

NameArg = Annotated[str, typer.Argument(help="Deployment name.")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="Return at once instead of waiting for the end.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, metavar="SECONDS", help="Give up waiting after this many seconds (exit 1).")
]
_RUNNING_STATES = ("Transitioning", "Healthy", "Unhealthy")


def _get(name: str) -> Deployment:
    from airflow_aml.deployments import Deployment

    return Deployment.get(state().workspace(), name)


def _active_replicas(deployment: Deployment) -> list[dict[str, Any]]:
    return [r for r in deployment.replicas if not r.get("draining")]


def _supervisor_running(deployment: Deployment) -> bool | None:
    """Whether its supervisor runs; None when it was last seen on another machine (cannot tell)."""
    host = (deployment.record.runtime.get("supervisor") or {}).get("host")
    if host and host != socket.gethostname():
        return None
    return deployment.supervisor_alive()


def _state_label(deployment: Deployment, running: bool | None) -> str:
    label = deployment.state.value
    if running is False and label in _RUNNING_STATES:
        label += " (supervisor down: run `airflow-aml deployments restore`)"
    return label


def _summary(deployment: Deployment) -> dict[str, Any]:
    """One deployment as ``list --json`` prints it (no keys, no key hashes)."""
    record = deployment.record
    active = _active_replicas(deployment)
    running = _supervisor_running(deployment)
    return {
        "name": record.name,
        "state": record.state.value,
        "target": record.target,
        "imageId": record.image_id,
        "servingImageId": record.serving_image_id,
        "scoringUri": record.scoring_uri,
        "swaggerUri": deployment.swagger_uri,
        # Without its supervisor nothing answers on the scoring URI (the front is the supervisor).
        "replicasReady": 0 if running is False else sum(1 for r in active if r.get("ready")),
        "replicasTotal": len(active),
        "supervisorRunning": running,
        "authEnabled": bool(record.config.get("auth_enabled", True)),
        "generation": record.generation,
        "createdBy": record.created_by,
        "createdTimeUtc": record.created_at,
        "updatedTimeUtc": record.updated_at,
        "error": record.error,
        "description": record.description,
        "tags": dict(record.tags),
    }


def _replica_rows(replicas: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for r in replicas:
        where = r.get("pid") or str(r.get("container") or "")[:12]
        started = r.get("started_at")
        rows.append(
            (
                f"g{r.get('generation')}-r{r.get('index')}",
                r.get("image"),
                r.get("port"),
                where,
                bool(r.get("ready")),
                bool(r.get("draining")),
                fmt_time(_utc(started)) if isinstance(started, int | float) else "",
            )
        )
    return rows


def _utc(timestamp: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


def _telemetry_fields(telemetry: dict[str, Any]) -> list[tuple[str, Any]]:
    latency = telemetry.get("latency_ms") or {}
    last = telemetry.get("last_request_at")
    return [
        ("Requests", telemetry.get("requests", 0)),
        ("Server errors (5xx)", telemetry.get("errors", 0)),
        ("Client errors (4xx)", telemetry.get("client_errors", 0)),
        ("Status counts", fmt(telemetry.get("status_counts") or {})),
        ("Latency p50 ms", latency.get("p50")),
        ("Latency p95 ms", latency.get("p95")),
        ("Latency p99 ms", latency.get("p99")),
        ("Latency window", latency.get("window")),
        ("Last request", fmt_time(_utc(last)) if isinstance(last, int | float) else fmt(last)),
        ("Samples collected", telemetry.get("samples_collected", 0)),
        ("Dropped lines", telemetry.get("dropped", 0)),
    ]


def _config(config_file: Path | None, replicas: int | None) -> DeploymentConfig | dict[str, Any] | None:
    """What ``deploy`` passes on: a file replaces the whole configuration; ``--replicas`` alone
    changes only the replica count (and turns autoscaling off) of an existing deployment."""
    from airflow_aml.deployments.config import DeploymentConfig

    if config_file is None:
        return None if replicas is None else {"replicas": replicas, "autoscale": None}
    settings = DeploymentConfig.coerce(config_file)
    if replicas is not None:
        if settings.autoscale is not None:
            raise ValidationError(f"--replicas and the autoscale section of {str(config_file)!r} exclude each other")
        settings = DeploymentConfig.coerce({**settings.model_dump(mode="json"), "replicas": replicas})
    return settings


# ------------------------------------------------------------------------------------------ commands
@deployments_app.command("deploy")
def deploy(
    name: NameArg,
    image: Annotated[
        str, typer.Option("--image", metavar="NAME[:VERSION]", help="Image to serve (NAME alone = its latest).")
    ],
    target: Annotated[str, typer.Option("--target", help="Deployment target: local or docker.")] = "local",
    config_file: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE.yml", help="Deployment configuration (YAML); replaces the current one."),
    ] = None,
    replicas: Annotated[
        int | None, typer.Option("--replicas", min=1, metavar="N", help="Number of replicas (no autoscaling).")
    ] = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = 600.0,
    json_output: JsonOption = False,
) -> None:
    """Create deployment NAME serving an image, or update it (rolling, no failed request) when it exists."""
    from airflow_aml.deployments import Deployment
    from airflow_aml.exceptions import DeploymentNotFoundError

    ws = state().workspace()
    settings = _config(config_file, replicas)
    try:
        Deployment.get(ws, name)
        verb = "updated"
    except DeploymentNotFoundError:
        verb = "created"
    deployment = Deployment.deploy(ws, name, image, target=target, config=settings, wait=not no_wait, timeout=timeout)
    if want_json(json_output):
        print_json(_summary(deployment.refresh()))
        return
    if no_wait:
        activity = deployment.record.activity_id
        typer.echo(
            f"Deployment {name!r} is being {verb} (activity {activity}); follow it with "
            f"`airflow-aml deployments show {name}`"
        )
        return
    deployment.refresh()
    typer.echo(
        f"Deployment {name!r} {verb}: {deployment.state.value}, image {deployment.serving_image_id}, "
        f"{len(_active_replicas(deployment))} replica(s)"
    )
    typer.echo(f"Scoring URI: {deployment.scoring_uri}")
    if deployment.error:
        info(f"Note: {deployment.error}")
    if deployment.config.auth_enabled:
        info(f"Keys: airflow-aml -w {ws.name} deployments keys {name}")


@deployments_app.command("list")
def list_(json_output: JsonOption = False) -> None:
    """List the deployments of the workspace."""
    from airflow_aml.deployments import Deployment

    deployments = Deployment.list(state().workspace())
    if want_json(json_output):
        print_json([_summary(d) for d in deployments])
        return
    rows = []
    for d in deployments:
        summary = _summary(d)
        rows.append(
            (
                d.name,
                _state_label(d, summary["supervisorRunning"]),
                d.target,
                d.image_id,
                d.serving_image_id,
                d.scoring_uri,
                f"{summary['replicasReady']}/{summary['replicasTotal']}",
            )
        )
    print_table("Deployments", ["Name", "State", "Target", "Image", "Serving image", "Scoring URI", "Replicas"], rows)


@deployments_app.command("show")
def show(name: NameArg, json_output: JsonOption = False) -> None:
    """Show a deployment: state, images, scoring URI, configuration, replicas, telemetry (never keys)."""
    deployment = _get(name)
    summary = _summary(deployment)
    activity = None
    with contextlib.suppress(LookupError):
        activity = deployment.activity
    telemetry = dict(deployment.record.runtime.get("telemetry") or {})
    telemetry.setdefault("requests", 0)
    if want_json(json_output):
        print_json(
            {
                **summary,
                "config": deployment.config.model_dump(mode="json"),
                "folder": deployment.folder,
                "supervisor": deployment.record.runtime.get("supervisor"),
                "autoscale": deployment.record.runtime.get("autoscale"),
                "activity": activity,
                "replicas": deployment.replicas,
                "telemetry": telemetry,
            }
        )
        return
    config = deployment.config
    sizing = (
        f"autoscale {config.autoscale.min_replicas}..{config.autoscale.max_replicas} "
        f"(target {config.autoscale.target_utilization:.0%})"
        if config.autoscale
        else f"{config.replicas}"
    )
    print_fields(
        f"Deployment {deployment.name}",
        [
            ("Name", deployment.name),
            ("State", _state_label(deployment, summary["supervisorRunning"])),
            ("Target", deployment.target),
            ("Image", deployment.image_id),
            ("Serving image", deployment.serving_image_id),
            ("Scoring URI", deployment.scoring_uri),
            ("Swagger URI", deployment.swagger_uri),
            ("Replicas", f"{summary['replicasReady']}/{summary['replicasTotal']} ready (wanted: {sizing})"),
            ("Auth", "key" if config.auth_enabled else "none"),
            (
                "Limits",
                ", ".join(
                    p
                    for p in (
                        f"{config.cpu_cores} CPU" if config.cpu_cores else "",
                        f"{config.memory_gb} GB" if config.memory_gb else "",
                    )
                    if p
                )
                or "none",
            ),
            ("Generation", deployment.record.generation),
            ("Activity", f"{activity.kind} {activity.status.value}: {activity.message}" if activity else ""),
            ("Error", deployment.error),
            ("Created", f"{fmt_time(deployment.record.created_at)} by {deployment.record.created_by}"),
            ("Updated", fmt_time(deployment.record.updated_at)),
            ("Tags", fmt(deployment.tags)),
            ("Description", deployment.record.description),
            ("Folder", str(deployment.folder)),
        ],
    )
    if deployment.replicas:
        print_table(
            "Replicas",
            ["Replica", "Image", "Port", "Pid/container", "Ready", "Draining", "Started"],
            _replica_rows(deployment.replicas),
        )
    print_fields("Telemetry", _telemetry_fields(telemetry))


@deployments_app.command("keys")
def keys(name: NameArg, json_output: JsonOption = False) -> None:
    """Print the primary and secondary keys (needs Owner or Contributor)."""
    primary, secondary = _get(name).get_keys()
    if want_json(json_output):
        print_json({"primaryKey": primary, "secondaryKey": secondary})
        return
    typer.echo(f"primary: {primary}")
    typer.echo(f"secondary: {secondary}")


@deployments_app.command("regenerate-key")
def regenerate_key(
    name: NameArg,
    which: Annotated[str, typer.Option("--key", help="Which key to replace: primary or secondary.")] = "primary",
    json_output: JsonOption = False,
) -> None:
    """Replace one key and print the new one; the old key is refused once this returns."""
    which = which.strip().lower()
    if which not in ("primary", "secondary"):
        raise ValidationError(f"--key must be primary or secondary, not {which!r}")
    key = _get(name).regenerate_key(which)
    if want_json(json_output):
        print_json({f"{which}Key": key})
        return
    info(f"The {which} key of deployment {name!r} was regenerated; the old one is refused")
    typer.echo(key)


@deployments_app.command("logs")
def logs(
    name: NameArg,
    tail: Annotated[int, typer.Option("--tail", min=0, metavar="N", help="Last N lines of each log (0 = all).")] = 200,
) -> None:
    """Print the supervisor's log and each replica's."""
    typer.echo(_get(name).get_logs(tail=tail or None), nl=False)


@deployments_app.command("telemetry")
def telemetry(name: NameArg, json_output: JsonOption = False) -> None:
    """Request counts, errors and latency percentiles (recorded every 10 s by the supervisor)."""
    deployment = _get(name)
    data = deployment.get_telemetry()
    if want_json(json_output):
        print_json(data)
        return
    print_fields(f"Telemetry of {deployment.name}", _telemetry_fields(data))


@deployments_app.command("delete")
def delete(name: NameArg, no_wait: NoWaitOption = False, timeout: TimeoutOption = 600.0) -> None:
    """Stop and remove a deployment (replicas, keys, files). Deleting one that does not exist succeeds."""
    from airflow_aml.deployments import Deployment

    ws = state().workspace()
    if not Deployment.delete_if_exists(ws, name, wait=not no_wait, timeout=timeout):
        info(f"Deployment {name!r} does not exist in workspace {ws.name!r}; nothing to delete")
        return
    typer.echo(f"Deployment {name!r} " + ("is being deleted" if no_wait else "deleted"))


@deployments_app.command("restore")
def restore(no_wait: NoWaitOption = False, timeout: TimeoutOption = 600.0, json_output: JsonOption = False) -> None:
    """Bring this machine's deployments back after a restart (supervisors, interrupted deletions)."""
    from airflow_aml.deployments import Deployment

    ws = state().workspace()
    acted = Deployment.restore(ws, wait=not no_wait, timeout=timeout)
    if want_json(json_output):
        print_json(acted)
        return
    if not acted:
        info(
            f"Nothing to restore in workspace {ws.name!r}: every deployment that should run has its "
            "supervisor (a create that failed on its own stays down: deploy it again)"
        )
        return
    from airflow_aml.exceptions import DeploymentNotFoundError

    for name in acted:
        try:
            deployment = Deployment.get(ws, name)
        except DeploymentNotFoundError:
            typer.echo(f"{name}: deleted (an interrupted deletion was finished)")
            continue
        typer.echo(f"{name}: {deployment.state.value} at {deployment.scoring_uri}")
    info(f"{'Restarting' if no_wait else 'Restored'} {len(acted)} deployment(s) of workspace {ws.name!r}")
