from __future__ import annotations

from pathlib import Path

import pytest

from airflow_aml.entities import Role, RunStatus
from airflow_aml.exceptions import (
    AlreadyExistsError,
    AuthorizationError,
    InvalidNameError,
    SecretNotFoundError,
    WorkspaceNotFoundError,
)
from airflow_aml.experiment import parse_metric_condition
from airflow_aml.workspace import Workspace


def test_create_registers_default_datastore_and_owner(workspace: Workspace, tmp_path: Path) -> None:
    assert workspace.role is Role.OWNER
    datastore = workspace.get_default_datastore()
    assert datastore.name == "workspaceblobstore"
    datastore.write_bytes("hello.txt", b"hi")
    assert (tmp_path / "datastore").exists()
    assert [a.principal for a in workspace.list_role_assignments()] == ["alice"]


def test_create_twice_fails_unless_exist_ok(workspace: Workspace, store_uri: str) -> None:
    with pytest.raises(AlreadyExistsError):
        Workspace.create("ws", store_uri=store_uri)
    again = Workspace.create("ws", store_uri=store_uri, exist_ok=True)
    assert again.name == "ws"


def test_an_opener_never_sees_a_new_workspace_without_its_owner_and_datastore(
    aml_home: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two Airflow tasks' first use of the embedded default, at once: the one that loses the
    creation race opens the workspace the moment it exists, and must find its Owner and default
    datastore there (they used to follow in later transactions: 'Principal ... (no role)')."""
    from airflow_aml.store.sql import SqlStore

    seen = []
    create = SqlStore.create_workspace

    def create_then_open(self: SqlStore, name: str, **kwargs: object) -> object:
        record = create(self, name, **kwargs)  # type: ignore[arg-type]
        other = Workspace.get(name, store_uri=store_uri, principal="alice")  # the concurrent task
        seen.append((other.role, list(other.datastores)))
        return record

    monkeypatch.setattr(SqlStore, "create_workspace", create_then_open)
    Workspace.create("ws", store_uri=store_uri, principal="alice")
    assert seen == [(Role.OWNER, ["workspaceblobstore"])]


def test_get_unknown_and_invalid_names(aml_home: Path, store_uri: str) -> None:
    with pytest.raises(WorkspaceNotFoundError, match="nope"):
        Workspace.get("nope", store_uri=store_uri)
    with pytest.raises(InvalidNameError, match="workspace"):
        Workspace.create("../evil", store_uri=store_uri)
    assert Workspace.list(store_uri=store_uri) == []


def test_secrets_are_encrypted_at_rest_and_never_listed(workspace: Workspace) -> None:
    workspace.set_secret("db-password", "hunter2")
    assert workspace.get_secret("db-password") == "hunter2"
    assert workspace.list_secrets() == ["db-password"]
    raw = workspace.store.get_secret("ws", "db-password")
    assert b"hunter2" not in raw
    workspace.delete_secret("db-password")
    with pytest.raises(SecretNotFoundError, match="db-password"):
        workspace.get_secret("db-password")


def test_secret_key_persists_across_handles(workspace: Workspace, store_uri: str, aml_home: Path) -> None:
    workspace.set_secret("token", "abc")
    assert (aml_home / "secret.key").stat().st_mode & 0o777 == 0o600
    assert Workspace.get("ws", store_uri=store_uri).get_secret("token") == "abc"


def test_wrong_secret_key_is_a_clear_error(workspace: Workspace, store_uri: str, monkeypatch) -> None:
    from cryptography.fernet import Fernet

    from airflow_aml.exceptions import AmlError

    workspace.set_secret("token", "abc")
    monkeypatch.setenv("AML_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(AmlError, match="cannot be decrypted"):
        Workspace.get("ws", store_uri=store_uri).get_secret("token")


def test_roles_gate_what_a_principal_may_do(workspace: Workspace, store_uri: str) -> None:
    workspace.assign_role("bob", Role.READER)
    workspace.assign_role("carol", "Contributor")
    bob = Workspace.get("ws", store_uri=store_uri, principal="bob")
    carol = Workspace.get("ws", store_uri=store_uri, principal="carol")
    mallory = Workspace.get("ws", store_uri=store_uri, principal="mallory")
    workspace.set_secret("s", "v")

    bob.experiment("e").search_runs()  # readers read
    with pytest.raises(AuthorizationError, match="'bob' \\(Reader\\) may not write"):
        bob.experiment("e").start_logging()
    with pytest.raises(AuthorizationError, match="read_secrets"):
        bob.get_secret("s")
    assert carol.get_secret("s") == "v"
    carol.experiment("e").start_logging().complete()
    with pytest.raises(AuthorizationError, match="manage"):
        carol.assign_role("mallory", Role.OWNER)
    with pytest.raises(AuthorizationError, match="no role"):
        mallory.experiment("e").search_runs()
    with pytest.raises(Exception, match="role"):
        workspace.assign_role("x", "Admin")


def test_register_datastore_and_compute_targets(workspace: Workspace, tmp_path: Path) -> None:
    from airflow_aml.exceptions import ValidationError

    workspace.register_datastore("archive", config={"root": str(tmp_path / "archive")}, set_default=True)
    assert workspace.get_default_datastore().name == "archive"
    assert set(workspace.datastores) == {"workspaceblobstore", "archive"}
    with pytest.raises(ValidationError, match="kind"):
        workspace.register_datastore("bad", kind="ftp", config={})
    assert "bad" not in workspace.datastores

    workspace.register_compute_target("cpu", kind="local")
    assert workspace.compute_targets["cpu"].kind == "local"
    with pytest.raises(ValidationError, match="compute kind"):
        workspace.register_compute_target("gpu", kind="quantum")


def test_parse_metric_condition() -> None:
    condition = parse_metric_condition("accuracy >= 0.9")
    assert (condition.metric, condition.op, condition.value) == ("accuracy", ">=", 0.9)
    from airflow_aml.exceptions import ValidationError

    for bad in ("accuracy>=0.9", "accuracy => 0.9", "accuracy >= high"):
        with pytest.raises(ValidationError):
            parse_metric_condition(bad)


def test_query_runs_by_status_tags_metrics_and_best(workspace: Workspace) -> None:
    experiment = workspace.experiment("sweep")
    parent = experiment.start_logging(tags={"kind": "sweep"})
    values = {0.1: 0.7, 1.0: 0.95, 10.0: 0.9}
    for c, accuracy in values.items():
        with parent.child_run(tags={"C": str(c)}) as child:
            child.log("accuracy", accuracy)
    failed = parent.child_run(tags={"C": "100"})
    failed.log("accuracy", 0.99)
    failed.fail("diverged")
    parent.complete()

    best = experiment.best_run("accuracy")
    assert best is not None and best.record.tags["C"] == "1.0"  # the failed 0.99 is not Completed
    worst = experiment.best_run("accuracy", goal="minimize")
    assert worst is not None and worst.record.tags["C"] == "0.1"
    good = experiment.search_runs(metrics=["accuracy >= 0.9"], status=RunStatus.COMPLETED, order_by="accuracy")
    assert [r.record.tags["C"] for r in good] == ["1.0", "10.0"]
    assert [r.id for r in experiment.get_runs()] == [parent.id]
    assert len(experiment.get_runs(include_children=True)) == 5
    assert experiment.best_run("no-such-metric") is None

    table = experiment.get_metrics_table()
    by_id = {row["run_id"]: row for row in table}
    assert by_id[best.id]["accuracy"] == 0.95
    frame = experiment.get_metrics_table(as_frame=True)
    assert len(frame) == 5
    assert parent.get_status(include_children=True) is RunStatus.FAILED


def test_experiments_listing(workspace: Workspace) -> None:
    workspace.experiment("a").start_logging().complete()
    workspace.experiment("b").start_logging().complete()
    assert sorted(workspace.experiments) == ["a", "b"]


def test_reader_gets_a_read_only_datastore(workspace: Workspace, store_uri: str) -> None:
    workspace.get_default_datastore().write_bytes("data.csv", b"a,b\n")
    workspace.assign_role("bob", Role.READER)
    bob = Workspace.get("ws", store_uri=store_uri, principal="bob")
    datastore = bob.get_default_datastore()
    assert datastore.read_bytes("data.csv") == b"a,b\n"
    with pytest.raises(AuthorizationError, match="'bob' \\(Reader\\) may not write.*data.csv"):
        datastore.write_bytes("data.csv", b"overwritten")
    with pytest.raises(AuthorizationError, match="deleting"):
        datastore.delete("data.csv")
    assert workspace.get_default_datastore().read_bytes("data.csv") == b"a,b\n"
    stranger = Workspace.get("ws", store_uri=store_uri, principal="mallory")
    with pytest.raises(AuthorizationError, match="no role"):
        stranger.get_default_datastore()


def test_get_experiment_and_activity_scoping(workspace: Workspace, store_uri: str, aml_home: Path) -> None:
    from airflow_aml.exceptions import ActivityNotFoundError, ExperimentNotFoundError

    with pytest.raises(ExperimentNotFoundError):
        workspace.get_experiment("never-run")
    workspace.experiment("ran").start_logging().complete()
    assert workspace.get_experiment("ran").name == "ran"
    other = Workspace.create("other", store_uri=store_uri)
    activity = other.store.create_activity("other", kind="run", target_id="x")
    with pytest.raises(ActivityNotFoundError, match="not found in workspace 'ws'"):
        workspace.get_activity(activity.activity_id)
    assert other.get_activity(activity.activity_id).target_id == "x"
