"""``airflow-aml``: the command line of the workspace SDK.

    airflow-aml workspace create demo
    airflow-aml -w demo run submit src/ --script train.py --wait
    airflow-aml -w demo run list -e iris --order-by accuracy

Global options come before the command: ``--store-uri`` (``$AML_STORE_URI``), ``--workspace/-w``
(``$AML_WORKSPACE``) and ``--json``. Errors print one ``Error: ...`` line on stderr and exit 1;
``AML_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from airflow_aml.cli import deployments, images, models, resources, runs, service, tokens, workspaces
from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import DEFAULT_WORKSPACE, ENV_WORKSPACE, State, set_state

app = AmlTyper(
    name="airflow-aml",
    help="Azure-ML-style workspaces, experiments and runs for Apache Airflow.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    store_uri: Annotated[
        str | None,
        typer.Option(
            "--store-uri",
            envvar="AML_STORE_URI",
            show_envvar=True,
            help="Metadata store URI (default: SQLite under $AML_HOME).",
        ),
    ] = None,
    workspace: Annotated[
        str,
        typer.Option("--workspace", "-w", envvar=ENV_WORKSPACE, show_envvar=True, help="Workspace to act on."),
    ] = DEFAULT_WORKSPACE,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")] = False,
) -> None:
    from airflow_aml import config

    set_state(State(store_uri=store_uri or config.default_store_uri(), workspace_name=workspace, json=json_output))


app.add_typer(workspaces.workspace_app, name="workspace")
app.add_typer(workspaces.experiment_app, name="experiment")
app.add_typer(runs.run_app, name="run")
app.add_typer(resources.datastore_app, name="datastore")
app.add_typer(resources.compute_app, name="compute")
app.add_typer(resources.secret_app, name="secret")
app.add_typer(resources.role_app, name="role")
app.add_typer(resources.activity_app, name="activity")
app.add_typer(resources.db_app, name="db")
app.add_typer(models.models_app, name="models")
app.add_typer(images.images_app, name="images")
app.add_typer(deployments.deployments_app, name="deployments")
app.add_typer(tokens.token_app, name="token")
app.command("service")(service.service)

# The other number of each group's name works too (``model list``, ``runs list``), unlisted.
for _group, _alias in [
    (workspaces.workspace_app, "workspaces"),
    (workspaces.experiment_app, "experiments"),
    (runs.run_app, "runs"),
    (resources.datastore_app, "datastores"),
    (resources.secret_app, "secrets"),
    (resources.role_app, "roles"),
    (resources.activity_app, "activities"),
    (models.models_app, "model"),
    (images.images_app, "image"),
    (deployments.deployments_app, "deployment"),
    (tokens.token_app, "tokens"),
]:
    app.add_typer(_group, name=_alias, hidden=True)


def main() -> None:
    """Console-script entry point (``airflow-aml``)."""
    app(prog_name="airflow-aml")


__all__ = ["app", "main"]
