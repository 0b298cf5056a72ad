"""The CLI as a user types it against a served workspace: ``AML_STORE_URI=http://host:port`` and
``AML_TOKEN``; who acts is the token's principal, not ``$AML_PRINCIPAL``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from airflow_aml.cli import app
from airflow_aml.workspace import Workspace
from tests.unit.cli.helpers import assert_one_line_error, finished_run, ok
from tests.unit.service.served import Served, serve

Typed = Callable[..., Result]


@pytest.fixture
def served(aml_home: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AML_PRINCIPAL", "mallory")  # ignored over a service: the token decides
    with serve(store_uri) as running:
        yield running


@pytest.fixture
def typed(served: Served) -> Typed:
    env = {"AML_STORE_URI": served.url, "AML_TOKEN": served.token("alice"), "AML_WORKSPACE": "demo"}

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=env, input=input)

    return run


def test_workspaces_runs_and_metrics_over_the_service(typed: Typed, served: Served) -> None:
    ok(typed("workspace", "create", "demo"))
    listed = ok(typed("--json", "workspace", "list")).stdout
    assert [(w["name"], w["created_by"]) for w in json.loads(listed)] == [("demo", "alice")]
    shown = json.loads(ok(typed("--json", "workspace", "show")).stdout)
    assert (shown["principal"], shown["role"], shown["store_uri"]) == ("alice", "Owner", served.url)

    ws = Workspace.get("demo", store_uri=served.uri_for("alice"))
    run = finished_run(ws, "iris", accuracy=0.75)
    assert ok(typed("experiment", "list")).stdout.count("iris") == 1
    assert run.id in ok(typed("run", "list", "-e", "iris")).stdout
    assert "0.75" in ok(typed("run", "show", run.id)).stdout
    assert ok(typed("run", "best", "-e", "iris", "--metric", "accuracy")).stdout.splitlines()[0] == run.id


def test_datastore_secrets_and_roles_over_the_service(typed: Typed, tmp_path: Path) -> None:
    ok(typed("workspace", "create", "demo"))
    source = tmp_path / "hello.txt"
    source.write_text("hello")
    ok(typed("datastore", "upload", str(source), "inbox"))
    ok(typed("datastore", "download", "inbox", str(tmp_path / "out")))
    (copy,) = (tmp_path / "out").rglob("hello.txt")
    assert copy.read_text() == "hello"

    ok(typed("secret", "set", "api-key", input="s3cret\n"))
    listing = ok(typed("secret", "list")).stdout
    assert "api-key" in listing and "s3cret" not in listing

    ok(typed("role", "assign", "bob", "Reader"))
    roles = ok(typed("--json", "role", "list")).stdout
    assert {(r["principal"], r["role"]) for r in json.loads(roles)} == {("alice", "Owner"), ("bob", "Reader")}


def test_db_upgrade_names_the_database_instead(typed: Typed) -> None:
    assert_one_line_error(typed("db", "upgrade"), "is a workspace service", "--store-uri")


def test_a_reader_is_refused_with_one_line(typed: Typed, served: Served) -> None:
    ok(typed("workspace", "create", "demo"))
    ok(typed("role", "assign", "bob", "Reader"))
    as_bob = {"AML_STORE_URI": served.url, "AML_TOKEN": served.token("bob"), "AML_WORKSPACE": "demo"}
    assert "demo" in ok(CliRunner().invoke(app, ["workspace", "list"], env=as_bob)).stdout
    refused = CliRunner().invoke(app, ["secret", "set", "k"], env=as_bob, input="v\n")
    assert_one_line_error(refused, "bob")


@pytest.mark.slow
def test_run_submit_on_the_local_target_over_the_service(typed: Typed, tmp_path: Path) -> None:
    ok(typed("workspace", "create", "demo"))
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("from airflow_aml.runtime import Run\nRun.get_context().log('acc', 0.5)\n")
    submitted = ok(typed("run", "submit", str(source), "--script", "train.py", "-e", "exp", "--wait"))
    run_id = submitted.stdout.splitlines()[0].strip()
    metrics = ok(typed("--json", "run", "metrics", run_id)).stdout
    assert json.loads(metrics)["acc"] in (0.5, [0.5])
