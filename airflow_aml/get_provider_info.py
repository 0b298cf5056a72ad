"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Connection form fields are declared here (``conn-fields``), the Airflow 3.2+ way, so that the UI
builds the form without importing the hook.
"""

from __future__ import annotations

from typing import Any

INTEGRATION = "Airflow AML"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-aml",
        "name": INTEGRATION,
        "description": "Azure-Machine-Learning-style workspace, runs, model registry, images and deployments.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://pypi.org/project/airflow-aml/",
                "tags": ["ml"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_aml.hooks.workspace", "airflow_aml.hooks.datastore"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_aml.operators.run",
                    "airflow_aml.operators.query",
                    "airflow_aml.operators.model",
                    "airflow_aml.operators.image",
                    "airflow_aml.operators.deployment",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_aml.sensors.activity", "airflow_aml.sensors.deployment"],
            }
        ],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_aml.triggers.activity"]}],
        "extra-links": [
            "airflow_aml.links.AmlRunLink",
            "airflow_aml.links.AmlModelLink",
            "airflow_aml.links.AmlImageLink",
            "airflow_aml.links.AmlDeploymentLink",
        ],
        "asset-uris": [{"schemes": ["aml"], "handler": "airflow_aml.assets.sanitize_uri"}],
        "connection-types": [
            {
                "connection-type": "aml_workspace",
                "hook-class-name": "airflow_aml.hooks.workspace.AmlWorkspaceHook",
                "hook-name": "AML Workspace",
                "conn-fields": {
                    "store_uri": {
                        "label": "Metadata store URI",
                        "description": "SQLAlchemy URI (sqlite:///..., postgresql+psycopg://...); "
                        "empty: the embedded SQLite under $AIRFLOW_HOME/aml",
                        "schema": {"type": ["string", "null"]},
                    },
                    "datastore_root": {
                        "label": "Default datastore folder",
                        "description": "Where the workspace's default local datastore lives when it is created",
                        "schema": {"type": ["string", "null"]},
                    },
                    "create_if_missing": {
                        "label": "Create the workspace if missing",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "principal": {
                        "label": "Principal",
                        "description": "Who the tasks act as (role checks); empty: the OS user",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ui_base_url": {
                        "label": "Workspace UI base URL",
                        "description": "Base of the links from tasks to runs and models",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "login", "port", "extra"],
                    "relabeling": {"schema": "Workspace", "password": "Store password"},
                    "placeholders": {"schema": "default", "password": "replaces the password in the store URI"},
                },
            }
        ],
    }
