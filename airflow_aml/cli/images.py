"""``airflow-aml images ...``: look at image versions (a scoring bundle and the environment that serves it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import JsonOption, fmt, fmt_time, print_fields, print_json, print_table, state, want_json
from airflow_aml.references import Reference

if TYPE_CHECKING:
    from airflow_aml.images.image import Image

images_app = AmlTyper(help="List, show and delete images (what deployments serve).")

ImageArg = Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="Image name, optionally :version.")]


def _get(reference: str) -> Image:
    from airflow_aml.images.image import Image

    return Image.get(state().workspace(), *Reference.parse(reference, "image"))


def _summary(image: Image) -> dict[str, Any]:
    record = image.record
    return {
        "id": record.id,
        "name": record.name,
        "version": record.version,
        "status": record.status.value,
        "builder": record.builder,
        "models": list(record.model_ids),
        "location": record.location,
        "digest": record.digest,
        "createdBy": record.created_by,
        "createdTimeUtc": record.created_at,
        "updatedTimeUtc": record.updated_at,
        "error": record.error,
        "description": record.description,
        "tags": dict(record.tags),
    }


@images_app.command("list")
def list_(
    name: Annotated[str | None, typer.Option("--name", help="Only versions of this image.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME[:VERSION]", help="Only images holding this model.")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest version of each image.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List image versions, newest first."""
    from airflow_aml.images.image import Image

    images = Image.list(state().workspace(), name=name, model=model, latest=latest)
    if want_json(json_output):
        print_json([_summary(i) for i in images])
        return
    print_table(
        "Images",
        ["Image", "Status", "Builder", "Models", "Created", "Error"],
        [
            (
                i.id,
                i.status.value,
                i.record.builder,
                ", ".join(i.model_ids),
                fmt_time(i.record.created_at),
                (i.error or "").splitlines()[0] if i.error else "",
            )
            for i in images
        ],
    )


@images_app.command("show")
def show(reference: ImageArg, json_output: JsonOption = False) -> None:
    """Show one image version (NAME alone = the latest)."""
    image = _get(reference)
    if want_json(json_output):
        print_json(
            {
                **_summary(image),
                "spec": image.record.spec,
                "properties": image.properties,
                "activityId": image.record.activity_id,
            }
        )
        return
    record = image.record
    print_fields(
        f"Image {image.id}",
        [
            ("Image", image.id),
            ("Status", image.status.value),
            ("Builder", record.builder),
            ("Models", ", ".join(record.model_ids)),
            ("Location", record.location),
            ("Digest", record.digest),
            ("Created", f"{fmt_time(record.created_at)} by {record.created_by}"),
            ("Updated", fmt_time(record.updated_at)),
            ("Tags", fmt(image.tags)),
            ("Description", record.description),
            ("Error", record.error),
        ],
    )


@images_app.command("log")
def log(reference: ImageArg) -> None:
    """Print the build log of an image version."""
    typer.echo(_get(reference).get_build_log(), nl=False)


@images_app.command("delete")
def delete(
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION", help="The version to delete (never implied).")],
) -> None:
    """Delete one image version and what its builder made; refused while it builds or a deployment serves it."""
    name, version = Reference.parse_id(reference, "image")
    image = state().workspace().get_image(name, version)
    image.delete()
    typer.echo(f"Deleted image {image.id}")
