"""The example DAG end to end with an Azure Blob default datastore (Azurite, started by
scripts/services.sh): the sweep's snapshot and outputs, the registered model's files, the image's
build log (its bundle is assembled from the model's files read from Blob) and the web service's
collected scoring data all land in the Blob container, and nothing in the local folder datastore.
"""

from __future__ import annotations

import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from airflow_aml.hooks.workspace import AmlWorkspaceHook
from airflow_aml.workspace import Workspace
from tests.system.test_example_dags import SERVING_TASKS, _load, _states, deployments, embedded_home  # noqa: F401
from tests.unit.datastores.test_contract import container  # noqa: F401  (the Azurite fixture)

SAMPLE = {"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


def test_the_example_dag_on_a_blob_default_datastore(
    airflow_db: Path, embedded_home: Path, deployments: list[str], container: tuple[str, str]  # noqa: F811
) -> None:
    conn, name = container
    ws = AmlWorkspaceHook().workspace
    local_root = Path(ws.get_default_datastore().root)  # the embedded default's local folder
    ws.set_secret("blob-conn", conn)
    ws.register_datastore("blob", kind="azure_blob", set_default=True,
                          config={"container": name, "prefix": "aml", "connection_string_secret": "blob-conn"})
    deployments.append("iris-blob-service")
    dag_run = _load("aml_train_register_deploy").dag.test(run_conf={
        "experiment": "iris-blob", "grid_C": [0.05, 1.0], "model_name": "iris-blob",
        "image_name": "iris-blob-scorer", "deployment_name": "iris-blob-service"})
    assert _states(dag_run) == {
        "train": "success", "best_run": "success", "register_model": "success",
        **dict.fromkeys(SERVING_TASKS, "success"),
    }

    ws = Workspace.get("default")
    [sweep] = ws.experiment("iris-blob").get_runs()
    children = sweep.get_children()
    [model] = ws.list_models(name="iris-blob")
    [image] = ws.list_images(name="iris-blob-scorer")
    service = ws.get_deployment("iris-blob-service")
    # Collected scoring data: sample every request, score, wait for the supervisor's next collection.
    service.update(config={"sample_rate": 1.0})
    assert service.run(SAMPLE)["predictions"] == [0, 2]

    blobs = BlobServiceClient.from_connection_string(conn).get_container_client(name)

    def names() -> list[str]:
        return [blob.name for blob in blobs.list_blobs(name_starts_with="aml/")]

    deadline = time.monotonic() + 60
    while not any("/collected/" in n for n in names()) and time.monotonic() < deadline:
        time.sleep(1)
    stored = names()
    assert any(n.startswith(f"aml/runs/{sweep.id}/") and "snapshot" in n for n in stored), stored
    for child in children:
        assert f"aml/runs/{child.id}/outputs/model.pkl" in stored, stored
    assert model.files() and all(any(n.endswith(f) for n in stored) for f in model.files()), stored
    # The image's bundle was assembled from the model's files read back from Blob; its log is there.
    assert f"aml/images/iris-blob-scorer/{image.version}/build.log" in stored, stored
    assert any(n.startswith("aml/deployments/iris-blob-service/collected/") for n in stored), stored
    assert image.record.builder == "local"
    # Nothing of this DAG run went to the local folder datastore.
    written = [p for p in local_root.rglob("*") if p.is_file()] if local_root.exists() else []
    assert written == [], written[:10]
