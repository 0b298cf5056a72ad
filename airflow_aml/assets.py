"""Airflow Assets for registered models: ``aml://<workspace>/models/<name>``.

``AmlRegisterModelOperator`` emits an asset event (extra: version, model id, run id) each time it
registers a version, so that a deploy DAG can be scheduled on a new model version:

    with DAG("deploy", schedule=[model_asset("iris-classifier")]): ...
"""

from __future__ import annotations

from urllib.parse import SplitResult

from airflow.sdk import Asset

SCHEME = "aml"


def model_asset_uri(name: str, workspace: str = "default") -> str:
    return f"{SCHEME}://{workspace}/models/{name}"


def model_asset(name: str, workspace: str = "default") -> Asset:
    return Asset(uri=model_asset_uri(name, workspace), name=f"aml-model-{workspace}-{name}", group="ml-model")


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's hook for the ``aml`` scheme (provider info ``asset-uris``): refuse malformed URIs."""
    parts = uri.path.strip("/").split("/")
    if not uri.netloc or len(parts) != 2 or parts[0] != "models" or not parts[1]:
        raise ValueError(f"AML asset URI must look like aml://<workspace>/models/<name>, not {uri.geturl()!r}")
    return uri
