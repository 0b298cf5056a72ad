"""``airflow-aml models ...``: the model registry (versions, tags, lineage, files)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
    state,
    want_json,
)
from airflow_aml.references import Reference

if TYPE_CHECKING:
    from airflow_aml.models import Model
    from airflow_aml.workspace import Workspace

models_app = AmlTyper(help="The model registry: register, list, show (with lineage), download and delete versions.")

ModelArg = Annotated[
    str, typer.Argument(metavar="NAME[:VERSION]", help="Model name, optionally :version (default: latest).")
]
TagsOption = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="KEY=VALUE", help="key=value (repeat for more); a value of * matches any value."),
]


def _get(reference: str) -> Model:
    return state().workspace().get_model(*Reference.parse(reference, "model"))


def _summary(model: Model) -> dict[str, Any]:
    record = model.record
    return {
        "id": record.id,
        "name": record.name,
        "version": record.version,
        "runId": record.run_id,
        "datastore": record.datastore,
        "path": record.path,
        "sha256": record.sha256,
        "createdBy": record.created_by,
        "createdTimeUtc": record.created_at,
        "description": record.description,
        "tags": dict(record.tags),
        "properties": dict(record.properties),
    }


def _lineage(ws: Workspace, model: Model) -> dict[str, Any]:
    """Where the version came from (its run) and where it went (images, their deployments)."""
    from airflow_aml.exceptions import RunNotFoundError

    run: dict[str, Any] | None = None
    if model.record.run_id:
        try:
            record = ws.get_run(model.record.run_id).record
            run = {"runId": record.run_id, "experiment": record.experiment, "status": record.status.value}
        except RunNotFoundError:  # the run was deleted; the registered files stay
            run = {"runId": model.record.run_id, "experiment": None, "status": "deleted"}
    images = ws.list_images(model=model.id)
    deployments = [
        {"name": d.name, "image": d.image_id, "state": d.state.value, "scoringUri": d.scoring_uri}
        for image in images
        for d in ws.list_deployments(image=image.id)
    ]
    return {
        "run": run,
        "images": [{"id": i.id, "status": i.status.value} for i in images],
        "deployments": deployments,
    }


@models_app.command("list")
def list_(
    name: Annotated[str | None, typer.Option("--name", help="Only versions of this model.")] = None,
    tags: TagsOption = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest version of each model.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List model versions, newest first."""
    ws = state().workspace()
    models = ws.list_models(name=name, tags=parse_pairs(tags, "--tag") or None, latest=latest)
    if want_json(json_output):
        print_json([_summary(m) for m in models])
        return
    if not models:
        filtered = name is not None or bool(tags)
        info(f"No model version in workspace {ws.name!r}" + (" matches" if filtered else " yet"))
        return
    print_table(
        "Models",
        ["Model", "Run", "Created", "By", "Tags", "Description"],
        [
            (
                m.id,
                m.record.run_id or "",
                fmt_time(m.record.created_at),
                m.record.created_by,
                fmt(m.tags),
                m.record.description,
            )
            for m in models
        ],
    )


@models_app.command("show")
def show(reference: ModelArg, json_output: JsonOption = False) -> None:
    """Show one model version with its lineage: the run it came from, the images and deployments using it."""
    ws = state().workspace()
    model = _get(reference)
    lineage = _lineage(ws, model)
    files = model.files()
    if want_json(json_output):
        print_json({**_summary(model), "files": files, **lineage})
        return
    record = model.record
    run = lineage["run"]
    print_fields(
        f"Model {model.id}",
        [
            ("Model", model.id),
            ("Description", record.description),
            ("Created", f"{fmt_time(record.created_at)} by {record.created_by}"),
            ("Run", f"{run['runId']} (experiment {run['experiment']}, {run['status']})" if run else ""),
            ("Source", record.properties.get("source", "")),
            ("Files", "\n".join(files)),
            ("Location", f"{record.datastore}:{record.path}"),
            ("SHA-256", record.sha256),
            ("Tags", fmt(model.tags)),
            ("Properties", fmt({k: v for k, v in record.properties.items() if k != "source"})),
            ("Images", "\n".join(f"{i['id']} ({i['status']})" for i in lineage["images"])),
            ("Deployments", "\n".join(f"{d['name']} ({d['state']}, {d['image']})" for d in lineage["deployments"])),
        ],
    )


@models_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Model name; the next version is assigned.")],
    path: Annotated[Path | None, typer.Option("--path", help="A local file or folder to register.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Register files of this run.")] = None,
    run_path: Annotated[
        str, typer.Option("--run-path", help="With --run-id: the run's file or folder to register.")
    ] = "outputs",
    datastore_path: Annotated[
        str | None, typer.Option("--datastore-path", help="Files already in the default datastore.")
    ] = None,
    tags: TagsOption = None,
    description: Annotated[str, typer.Option("--description", help="A human description.")] = "",
    json_output: JsonOption = False,
) -> None:
    """Register the next version of a model from a local path, a run's files or a datastore path; prints its id."""
    model = (
        state()
        .workspace()
        .register_model(
            name,
            path=path,
            run_id=run_id,
            run_path=run_path,
            datastore_path=datastore_path,
            tags=parse_pairs(tags, "--tag"),
            description=description,
        )
    )
    if want_json(json_output):
        print_json(_summary(model))
        return
    typer.echo(model.id)
    info(f"Registered model {model.id} ({len(model.files())} file(s))")


@models_app.command("tag")
def tag(
    reference: ModelArg,
    tags: Annotated[list[str], typer.Argument(metavar="KEY=VALUE", help="Tags to set (repeat for more).")],
) -> None:
    """Add or overwrite tags of a model version."""
    model = _get(reference)
    model.add_tags(parse_pairs(tags, "tag"))
    typer.echo(f"Model {model.id}: {fmt(model.tags)}".replace("\n", ", "))


@models_app.command("download")
def download(
    reference: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Local folder to copy the files into.")] = Path("."),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that already exist.")] = False,
) -> None:
    """Download the files of a model version; prints the folder (or the single file)."""
    model = _get(reference)
    typer.echo(str(model.download(output, exist_ok=overwrite)))
    info(f"Downloaded model {model.id} into {output}")


@models_app.command("delete")
def delete(
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="The version to delete (never implied).")],
) -> None:
    """Delete one model version; refused while an image uses it. Its number is never reused."""
    name, version = Reference.parse_id(reference, "model")
    model = state().workspace().get_model(name, version)
    model.delete()
    typer.echo(f"Deleted model {model.id}")
