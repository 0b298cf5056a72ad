"""The workspace on its own, no scheduler: create a workspace, submit a training sweep as child
runs on the local compute target, wait, and print the best run.

    python examples/demo_workspace.py            # uses $AML_HOME (default $AIRFLOW_HOME/aml)
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from show_result import print_sweep  # examples/show_result.py

from airflow_aml.runconfig import RunConfiguration, SweepSpec
from airflow_aml.workspace import Workspace

SOURCE = Path(__file__).resolve().parents[1] / "dags_examples" / "iris"


def main() -> None:
    console = Console()
    ws = Workspace.create("demo", exist_ok=True, description="airflow-aml demo workspace")
    config = RunConfiguration(
        script="train.py",
        sweep=SweepSpec(grid={"C": (0.01, 0.1, 1.0, 10.0)}, max_concurrent=2),
        max_run_duration_seconds=600,
    )
    experiment = ws.experiment("iris-sweep")
    run = experiment.submit(SOURCE, config, tags={"demo": "true"})
    console.print(f"Submitted sweep run [bold]{run.id}[/] to workspace [bold]{ws.name}[/]")
    run.wait_for_completion(show_output=True)

    print_sweep(console, run)

    best = experiment.best_run("cv_accuracy", goal="maximize", parent_run_id=run.id)
    if best is None:
        raise SystemExit("No child run logged cv_accuracy")
    metrics = best.get_metrics()
    console.print(
        f"Best run: [bold green]{best.id}[/] C={best.record.params['C']} "
        f"cv_accuracy={metrics['cv_accuracy']:.4f} accuracy={metrics['accuracy']:.4f} "
        f"files={best.get_file_names()}"
    )


if __name__ == "__main__":
    main()
