"""Workspace resources: ``datastore``, ``compute``, ``secret``, ``role``, ``activity`` and ``db``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import (
    JsonOption,
    fmt,
    fmt_time,
    info,
    parse_pairs,
    print_fields,
    print_json,
    print_table,
    redact,
    state,
    want_json,
)
from airflow_aml.exceptions import ValidationError

datastore_app = AmlTyper(help="Register datastores and move files in and out of them.")
compute_app = AmlTyper(help="Attach and list compute targets.")
secret_app = AmlTyper(help="Workspace secrets (values are never printed).")
role_app = AmlTyper(help="Role assignments (Owner, Contributor, Reader).")
activity_app = AmlTyper(help="Long-running operations and their progress.")
db_app = AmlTyper(help="The metadata database.")

DatastoreOption = Annotated[
    str | None, typer.Option("--datastore", help="Datastore name (default: the workspace default).")
]


# ------------------------------------------------------------------------------------------ datastore
def _datastore(name: str | None) -> Any:
    ws = state().workspace()
    return ws.get_datastore(name) if name else ws.get_default_datastore()


@datastore_app.command("list")
def datastore_list(json_output: JsonOption = False) -> None:
    """List the datastores of the workspace."""
    records = sorted(state().workspace().datastores.values(), key=lambda d: d.name)
    if want_json(json_output):
        print_json(records)
        return
    print_table(
        "Datastores",
        ["Name", "Kind", "Default", "Config", "Created"],
        [(d.name, d.kind, d.is_default, fmt(d.config), fmt_time(d.created_at)) for d in records],
    )


@datastore_app.command("register")
def datastore_register(
    name: Annotated[str, typer.Argument(help="Datastore name.")],
    root: Annotated[Path, typer.Option("--root", help="Folder that holds the datastore's files.")],
    default: Annotated[bool, typer.Option("--default", help="Make it the workspace default.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a datastore of that name.")] = False,
) -> None:
    """Register a local folder as a datastore."""
    ws = state().workspace()
    ws.register_datastore(
        name, kind="local", config={"root": str(root.expanduser().resolve())}, set_default=default, overwrite=overwrite
    )
    typer.echo(f"Datastore {name!r} registered" + (" (default)" if default else ""))


@datastore_app.command("upload")
def datastore_upload(
    src: Annotated[Path, typer.Argument(help="Local file or folder.")],
    target_path: Annotated[str, typer.Argument(help="Folder in the datastore to upload into.")],
    datastore: DatastoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Upload a file or a folder (recursively) into a datastore."""
    store = _datastore(datastore)
    objects = store.upload(src, target_path, show_progress=True)
    if want_json(json_output):
        print_json(objects)
        return
    total = sum(o.size for o in objects)
    info(f"Uploaded {len(objects)} file(s), {total} bytes, into {store.name}:{target_path}")


@datastore_app.command("download")
def datastore_download(
    prefix: Annotated[str, typer.Argument(help="Folder in the datastore.")],
    output_dir: Annotated[Path, typer.Argument(help="Local folder.")],
    datastore: DatastoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download every file below a datastore folder, keeping relative paths."""
    store = _datastore(datastore)
    paths = store.download(output_dir, prefix, show_progress=True)
    if want_json(json_output):
        print_json(paths)
        return
    info(f"Downloaded {len(paths)} file(s) from {store.name}:{prefix} into {output_dir}")


# ------------------------------------------------------------------------------------------ compute
@compute_app.command("list")
def compute_list(json_output: JsonOption = False) -> None:
    """List the compute targets attached to the workspace."""
    records = sorted(state().workspace().compute_targets.values(), key=lambda c: c.name)
    if want_json(json_output):
        print_json(records)
        return
    print_table(
        "Compute targets",
        ["Name", "Kind", "Config", "Created"],
        [(c.name, c.kind, fmt(c.config), fmt_time(c.created_at)) for c in records],
    )


@compute_app.command("attach")
def compute_attach(
    name: Annotated[str, typer.Argument(help="Compute target name (what run configurations name as target).")],
    kind: Annotated[str, typer.Option("--kind", help="Kind of compute, e.g. local.")] = "local",
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config", metavar="KEY=VALUE", help="key=value setting of the target (repeatable; YAML values)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a target of that name.")] = False,
) -> None:
    """Attach a compute target to the workspace."""
    settings = {key: yaml.safe_load(value) if value else "" for key, value in parse_pairs(config, "--config").items()}
    record = state().workspace().register_compute_target(name, kind=kind, config=settings, overwrite=overwrite)
    typer.echo(f"Compute target {record.name!r} ({record.kind}) attached")


# ------------------------------------------------------------------------------------------ secret
@secret_app.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="Secret name.")],
    value: Annotated[
        str | None,
        typer.Option("--value", help="The value (visible in shell history: prefer the prompt or stdin)."),
    ] = None,
) -> None:
    """Store a secret: --value, else read from stdin when piped, else prompted (hidden)."""
    from airflow_aml.names import validate_secret_name
    from airflow_aml.roles import Action

    # Everything that can refuse the secret is checked before its value is asked for.
    validate_secret_name(name)
    ws = state().workspace()
    ws.require(Action.MANAGE)
    if value is None:
        if sys.stdin is not None and not sys.stdin.isatty():
            value = sys.stdin.read()
            value = value[:-1] if value.endswith("\n") else value
            value = value[:-1] if value.endswith("\r") else value
            if not value:
                raise ValidationError(f"No value for secret {name!r} on stdin; pipe it in or pass --value")
        else:
            value = typer.prompt(f"Value of secret {name!r}", hide_input=True, confirmation_prompt=True)
    ws.set_secret(name, value)
    typer.echo(f"Secret {name!r} set in workspace {ws.name!r}")


@secret_app.command("list")
def secret_list(json_output: JsonOption = False) -> None:
    """List secret names (never values)."""
    names = sorted(state().workspace().list_secrets())
    if want_json(json_output):
        print_json(names)
        return
    for name in names:
        typer.echo(name)


@secret_app.command("delete")
def secret_delete(name: Annotated[str, typer.Argument(help="Secret name.")]) -> None:
    """Delete a secret."""
    ws = state().workspace()
    ws.delete_secret(name)
    typer.echo(f"Secret {name!r} deleted from workspace {ws.name!r}")


# ------------------------------------------------------------------------------------------ role
@role_app.command("assign")
def role_assign(
    principal: Annotated[str, typer.Argument(help="User or service principal.")],
    role: Annotated[str, typer.Argument(help="Owner, Contributor or Reader.")],
) -> None:
    """Give a principal a role in the workspace (replaces its previous role)."""
    from airflow_aml.entities import Role

    by_lower = {r.value.lower(): r.value for r in Role}
    assignment = state().workspace().assign_role(principal, by_lower.get(role.lower(), role))
    typer.echo(f"{assignment.principal} is {assignment.role.value} of workspace {assignment.workspace!r}")


@role_app.command("list")
def role_list(json_output: JsonOption = False) -> None:
    """List role assignments."""
    assignments = state().workspace().list_role_assignments()
    if want_json(json_output):
        print_json(assignments)
        return
    print_table(
        "Role assignments",
        ["Principal", "Role", "Since"],
        [(a.principal, a.role.value, fmt_time(a.created_at)) for a in assignments],
    )


@role_app.command("remove")
def role_remove(principal: Annotated[str, typer.Argument(help="User or service principal.")]) -> None:
    """Remove a principal's role from the workspace."""
    ws = state().workspace()
    ws.remove_role(principal)
    typer.echo(f"{principal} has no role in workspace {ws.name!r} any more")


# ------------------------------------------------------------------------------------------ activity
@activity_app.command("show")
def activity_show(
    activity_id: Annotated[str, typer.Argument(help="Activity id (a run's activity has the run's id).")],
    json_output: JsonOption = False,
) -> None:
    """Show one activity: status, progress, message, error."""
    a = state().workspace().get_activity(activity_id)
    if want_json(json_output):
        print_json(a)
        return
    print_fields(
        f"Activity {a.activity_id}",
        [
            ("ID", a.activity_id),
            ("Kind", a.kind),
            ("Target", a.target_id),
            ("Status", a.status.value),
            ("Progress", f"{a.progress:.0%}"),
            ("Message", a.message),
            ("Created", fmt_time(a.created_at)),
            ("Updated", fmt_time(a.updated_at)),
            ("Ended", fmt_time(a.ended_at)),
            ("Error", a.error),
        ],
    )


@activity_app.command("wait")
def activity_wait(
    activity_id: Annotated[str, typer.Argument(help="Activity id (a run's activity has the run's id).")],
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, metavar="SECONDS", help="Give up waiting after this many seconds (exit 1)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Wait until an activity ends, printing its progress on stderr; exit 1 unless it succeeded."""
    from airflow_aml.entities import ActivityStatus

    ws = state().workspace()

    def show(a: Any) -> None:
        typer.echo(f"{a.status.value:<10} {a.progress:>4.0%}  {a.message}".rstrip(), err=True)

    final = ws.wait_for_activity(activity_id, timeout=timeout, on_progress=show)
    if want_json(json_output):
        print_json(final)
    elif final.error:
        typer.echo(f"Activity {final.activity_id}: {final.error}", err=True)
    if final.status is not ActivityStatus.SUCCEEDED:
        raise typer.Exit(1)


@activity_app.command("list")
def activity_list(
    target: Annotated[
        str | None, typer.Option("--target", help="Only activities of this object (e.g. a run id).")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only activities of this kind (e.g. run).")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the activities of the workspace."""
    activities = state().workspace().list_activities(target_id=target, kind=kind)
    if want_json(json_output):
        print_json(activities)
        return
    print_table(
        "Activities",
        ["ID", "Kind", "Target", "Status", "Progress", "Message", "Updated"],
        [
            (a.activity_id, a.kind, a.target_id, a.status.value, f"{a.progress:.0%}", a.message, fmt_time(a.updated_at))
            for a in activities
        ],
    )


# ------------------------------------------------------------------------------------------ db
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the metadata database schema to the newest revision."""
    from airflow_aml.store.sql.migrate import upgrade

    uri = state().store_uri
    if uri.split(":", 1)[0].lower() in ("http", "https"):
        raise ValidationError(
            f"{redact(uri)} is a workspace service: it migrates its own database when it starts "
            "(run 'airflow-aml db upgrade' with --store-uri set to that database instead)"
        )
    revision = upgrade(uri)
    typer.echo(f"Metadata store {redact(uri)} is at schema revision {revision}")
