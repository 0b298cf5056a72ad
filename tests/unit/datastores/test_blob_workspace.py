"""A workspace whose default datastore is Azure Blob (on Azurite): secrets, the hook, runs' files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_aml.datastores.blob import BlobDatastore
from airflow_aml.exceptions import ValidationError
from airflow_aml.hooks.datastore import AmlDatastoreHook
from airflow_aml.workspace import Workspace
from tests.unit.datastores.test_contract import container  # noqa: F401  (the Azurite fixture)


@pytest.fixture
def blob_workspace(workspace: Workspace, container: tuple[str, str]) -> Workspace:  # noqa: F811
    conn, name = container
    workspace.set_secret("blob-conn", conn)
    workspace.register_datastore(
        "azureblob", kind="azure_blob",
        config={"container": name, "prefix": "aml", "connection_string_secret": "blob-conn"},
        set_default=True,
    )
    return workspace


def test_credentials_stay_in_the_vault(blob_workspace: Workspace, container: tuple[str, str]) -> None:  # noqa: F811
    conn, name = container
    record = blob_workspace.datastores["azureblob"]
    assert conn not in repr(record.config) and "AccountKey" not in repr(record.config)
    assert record.config["connection_string_secret"] == "blob-conn"
    assert isinstance(blob_workspace.get_default_datastore(), BlobDatastore)
    with pytest.raises(ValidationError, match="never stored in the datastore record"):
        blob_workspace.register_datastore("raw", kind="azure_blob",
                                          config={"container": name, "connection_string": conn})


def test_datastore_hook_upload_download_on_blob(
        blob_workspace: Workspace, aml_conn: str, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    payload = os.urandom(3 * 1024 * 1024)
    (src / "train.csv").write_bytes(payload)
    hook = AmlDatastoreHook(aml_conn_id=aml_conn)
    assert hook.upload(src, "inputs") == ["inputs/train.csv"]
    assert [o.path for o in hook.list("inputs")] == ["inputs/train.csv"]
    out = tmp_path / "out"
    hook.download("inputs", out)
    assert (out / "train.csv").read_bytes() == payload
    hook.delete("inputs")
    assert not hook.exists("inputs/train.csv")


def test_wasb_connection_gives_the_credentials(
        workspace: Workspace, container: tuple[str, str], aml_conn: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    conn, name = container
    # A wasb connection as Airflow stores it; WasbHook reads the connection string from its extra.
    monkeypatch.setenv("AIRFLOW_CONN_WASB_TEST", json.dumps(
        {"conn_type": "wasb", "extra": {"connection_string": conn}}))
    ds = AmlDatastoreHook(aml_conn_id=aml_conn).workspace_hook.workspace.register_datastore(
        "viawasb", kind="azure_blob", config={"container": name, "wasb_conn_id": "wasb_test"})
    assert ds.write_bytes("x.txt", b"via wasb").sha256
    assert ds.read_bytes("x.txt") == b"via wasb"
    assert workspace.datastores["viawasb"].config == {"container": name, "wasb_conn_id": "wasb_test"}


def test_train_register_download_through_blob(
        blob_workspace: Workspace, container: tuple[str, str], script_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    from airflow_aml.runconfig import RunConfiguration

    run = blob_workspace.experiment("e").submit(script_dir, RunConfiguration(script="train.py", arguments=("--C", "3")))
    run.wait_for_completion(timeout=120, poll_interval=0.2)
    model = blob_workspace.register_model("m", run_id=run.id, run_path="outputs/model.txt")
    assert model.download(tmp_path / "model").read_text() == "C=3.0"
    # Snapshot, outputs and the model's files really live in the container, under the prefix.
    conn, name = container
    names = [b.name for b in BlobServiceClient.from_connection_string(conn).get_container_client(name).list_blobs()]
    assert names and all(n.startswith("aml/") for n in names)
    assert any(n.endswith("outputs/model.txt") for n in names)
