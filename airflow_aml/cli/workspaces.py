"""``airflow-aml workspace ...`` and ``airflow-aml experiment ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import (
    JsonOption,
    fmt_time,
    info,
    jsonable,
    print_fields,
    print_json,
    print_table,
    redact,
    state,
    want_json,
)

workspace_app = AmlTyper(help="Create, show and list workspaces.")
experiment_app = AmlTyper(help="List experiments.")


@workspace_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    datastore_root: Annotated[
        Path | None,
        typer.Option("--datastore-root", help="Folder of the default datastore (default: under $AML_HOME)."),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Succeed if the workspace already exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Create a workspace with a local default datastore; you become its Owner."""
    from airflow_aml.workspace import Workspace

    st = state()
    ws = Workspace.create(
        name, store_uri=st.store_uri, datastore_root=datastore_root, description=description, exist_ok=exist_ok
    )
    if want_json(json_output):
        print_json(ws.record)
    else:
        typer.echo(f"Workspace {ws.name!r} ready (store {redact(st.store_uri)})")


@workspace_app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="Workspace name (default: --workspace).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Show a workspace: owner, default datastore, datastores, compute targets, your role."""
    from airflow_aml.workspace import Workspace

    st = state()
    ws = Workspace.get(name, store_uri=st.store_uri) if name else st.workspace()
    record = ws.record
    datastores = sorted(ws.datastores)
    targets = sorted(ws.compute_targets)
    role = ws.role
    if want_json(json_output):
        print_json(
            {
                **jsonable(record),
                "store_uri": redact(ws.store_uri),
                "principal": ws.principal,
                "role": role,
                "datastores": datastores,
                "compute_targets": targets,
            }
        )
        return
    print_fields(
        f"Workspace {ws.name}",
        [
            ("Name", record.name),
            ("Description", record.description),
            ("Created by", record.created_by),
            ("Created", fmt_time(record.created_at)),
            ("Default datastore", record.default_datastore),
            ("Datastores", ", ".join(datastores)),
            ("Compute targets", ", ".join(targets)),
            ("Store", redact(ws.store_uri)),
            ("You", f"{ws.principal} ({role.value if role else 'no role'})"),
        ],
    )


@workspace_app.command("list")
def list_workspaces(json_output: JsonOption = False) -> None:
    """List the workspaces of the metadata store."""
    from airflow_aml.workspace import Workspace

    records = Workspace.list(store_uri=state().store_uri)
    if want_json(json_output):
        print_json(records)
        return
    if not records:
        info("No workspaces; create one with: airflow-aml workspace create NAME")
    print_table(
        "Workspaces",
        ["Name", "Description", "Created by", "Created", "Default datastore"],
        [(r.name, r.description, r.created_by, fmt_time(r.created_at), r.default_datastore) for r in records],
    )


@experiment_app.command("list")
def list_experiments(json_output: JsonOption = False) -> None:
    """List the experiments of the workspace."""
    ws = state().workspace()
    names = sorted(ws.experiments)
    if want_json(json_output):
        print_json([{"workspace": ws.name, "name": name} for name in names])
        return
    print_table(f"Experiments in {ws.name}", ["Name"], [(name,) for name in names])
