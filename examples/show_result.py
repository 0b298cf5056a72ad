"""Print what the example DAG left in a workspace: the sweep's child runs, the best one, the model,
the scoring image and the web service, with a sample ``curl`` request (it carries the service key).

    python examples/show_result.py                 # after scripts/main.sh
    python examples/show_result.py --uri-and-key   # "<scoring URI> <primary key>" on one line (for scripts)
"""

from __future__ import annotations

import argparse
import json
import shlex

from rich.console import Console
from rich.table import Table

from airflow_aml.exceptions import DeploymentNotFoundError, ImageNotFoundError, ModelNotFoundError
from airflow_aml.runtime import Run
from airflow_aml.workspace import Workspace

SAMPLE = {"data": [[5.1, 3.5, 1.4, 0.2]]}


def print_sweep(console: Console, sweep: Run) -> None:
    table = Table(title=f"Sweep {sweep.id} ({sweep.status.value})")
    for column in ("child run", "C", "status", "cv_accuracy", "accuracy"):
        table.add_column(column)
    for child in sweep.get_children():
        metrics = child.get_metrics()
        table.add_row(
            child.id, child.record.params.get("C", "?"), child.status.value,
            f"{metrics.get('cv_accuracy', float('nan')):.4f}", f"{metrics.get('accuracy', float('nan')):.4f}",
        )
    console.print(table)


def curl_command(scoring_uri: str, key: str, sample: dict = SAMPLE) -> str:
    return (
        f"curl -s -X POST {shlex.quote(scoring_uri)} -H {shlex.quote(f'Authorization: Bearer {key}')} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(sample))}"
    )


def main(
    experiment: str = "iris-train", model_name: str = "iris-classifier", image_name: str = "iris-scorer",
    deployment_name: str = "iris-service",
) -> None:
    console = Console(soft_wrap=True)  # summary lines never wrap, in a terminal or in a log or pipe
    ws = Workspace.get("default")
    sweeps = ws.experiment(experiment).get_runs()
    if not sweeps:
        raise SystemExit(f"No run of experiment {experiment!r} in workspace {ws.name!r}")
    print_sweep(console, sweeps[0])
    try:
        model = ws.get_model(model_name)
    except ModelNotFoundError:
        raise SystemExit(f"Model {model_name!r} was not registered") from None
    console.print(
        f"Registered model [bold green]{model.id}[/] from run {model.record.run_id} "
        f"(cv_accuracy {float(model.record.properties['metric.cv_accuracy']):.4f}), files {model.files()}"
    )
    try:
        image = ws.get_image(image_name)
    except ImageNotFoundError:
        raise SystemExit(f"Image {image_name!r} was not built") from None
    console.print(
        f"Image [bold green]{image.id}[/] ({image.status.value}, {image.record.builder} builder) "
        f"packs {', '.join(image.model_ids)}"
    )
    try:
        service = ws.get_deployment(deployment_name)
    except DeploymentNotFoundError:
        raise SystemExit(f"Deployment {deployment_name!r} does not exist") from None
    console.print(
        f"Web service [bold green]{service.name}[/] ({service.state.value}, {service.target} target, "
        f"{len(service.replicas)} replica(s)) serves {service.image_id}"
    )
    console.print(f"Scoring URI: {service.scoring_uri}")
    console.print(f"Swagger:     {service.swagger_uri}")
    console.print("Sample request:")
    console.print(curl_command(service.scoring_uri, service.get_keys()[0]), highlight=False, markup=False)


def uri_and_key(deployment_name: str) -> None:
    service = Workspace.get("default").get_deployment(deployment_name)
    print(service.scoring_uri, service.get_keys()[0])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="iris-train")
    parser.add_argument("--model", default="iris-classifier")
    parser.add_argument("--image", default="iris-scorer")
    parser.add_argument("--deployment", default="iris-service")
    parser.add_argument("--uri-and-key", action="store_true", help="print only '<scoring URI> <primary key>'")
    args = parser.parse_args()
    if args.uri_and_key:
        uri_and_key(args.deployment)
    else:
        main(args.experiment, args.model, args.image, args.deployment)
