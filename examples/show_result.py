"""Print what a training sweep left in a workspace: its child runs, the best one, the model.

    python examples/show_result.py      # after scripts/main.sh: the example DAG's sweep and model
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from airflow_aml.exceptions import ModelNotFoundError
from airflow_aml.runtime import Run
from airflow_aml.workspace import Workspace


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


def main(experiment: str = "iris-train", model_name: str = "iris-classifier") -> None:
    console = Console()
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


if __name__ == "__main__":
    main()
