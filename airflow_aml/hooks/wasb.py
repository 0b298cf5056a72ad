"""Credentials for ``azure_blob`` datastores from the microsoft-azure provider's ``wasb`` connection.

Importing this module registers the factory with the datastore layer, which cannot import Airflow
itself; ``airflow_aml.hooks.datastore`` imports it, so every hook user gets it.
"""

from __future__ import annotations

from typing import Any

from airflow_aml.datastores.blob import register_wasb_service_factory


def blob_service_from_wasb(wasb_conn_id: str) -> Any:
    """The ``BlobServiceClient`` WasbHook builds from the connection (key, SAS, connection string,
    service principal or DefaultAzureCredential, as the connection says)."""
    try:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    except ImportError as exc:
        raise ImportError(
            "A datastore with 'wasb_conn_id' needs apache-airflow-providers-microsoft-azure: "
            "pip install 'airflow-aml[azure]'"
        ) from exc
    return WasbHook(wasb_conn_id=wasb_conn_id).get_conn()


register_wasb_service_factory(blob_service_from_wasb)
