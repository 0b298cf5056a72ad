"""``airflow-aml token create/list/revoke`` on the service's database and over a served workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from airflow_aml.cli import app
from tests.unit.cli.helpers import assert_one_line_error, ok
from tests.unit.service.served import Served, serve


@pytest.fixture
def served(aml_home: Path, store_uri: str) -> Iterator[Served]:
    with serve(store_uri) as running:
        yield running


def cli(store_uri: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["--store-uri", store_uri, *args], env=env)


def status_with(served: Served, token: str) -> int:
    answer = httpx.get(served.url + "/api/v1/workspaces", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer.status_code


def test_create_prints_the_token_alone_and_the_service_accepts_it(served: Served) -> None:
    result = ok(cli(served.store_uri, "token", "create", "--principal", "alice", "--name", "laptop"))
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # nothing else on stdout: TOKEN=$(airflow-aml token create ...)
    assert token.startswith("aml_pat_")
    assert "laptop" in result.stderr and "alice" in result.stderr and token not in result.stderr
    assert status_with(served, token) == 200
    assert status_with(served, token + "x") == 401


def test_list_shows_the_token_but_never_its_value_and_revoke_makes_it_401(served: Served) -> None:
    token = ok(cli(served.store_uri, "token", "create", "--principal", "alice", "--name", "ci",
                   "--no-expiry")).stdout.strip()
    ok(cli(served.store_uri, "token", "create", "--principal", "bob", "--name", "bobs"))
    listing = ok(cli(served.store_uri, "--json", "token", "list", "--principal", "alice")).stdout
    assert token not in listing
    import json

    rows = json.loads(listing)
    assert [(r["name"], r["principal"], r["expires_at"], r["revoked_at"]) for r in rows] == [
        ("ci", "alice", None, None)
    ]
    assert "token_hash" not in rows[0]
    everyone = ok(cli(served.store_uri, "token", "list")).stdout
    assert "ci" in everyone and "bobs" in everyone and token not in everyone

    assert status_with(served, token) == 200
    token_id = rows[0]["token_id"]
    assert_one_line_error(cli(served.store_uri, "token", "revoke", token_id, "--principal", "bob"), "not found")
    assert status_with(served, token) == 200  # bob's name cannot revoke alice's token
    ok(cli(served.store_uri, "token", "revoke", token_id, "--principal", "alice"))
    assert status_with(served, token) == 401
    (row,) = json.loads(ok(cli(served.store_uri, "--json", "token", "list", "--principal", "alice")).stdout)
    assert row["revoked_at"] is not None


def test_the_database_needs_a_principal_and_one_expiry(served: Served) -> None:
    assert_one_line_error(cli(served.store_uri, "token", "create"), "--principal is required")
    assert_one_line_error(cli(served.store_uri, "token", "revoke", "abc"), "--principal is required")
    assert_one_line_error(
        cli(served.store_uri, "token", "create", "--principal", "a", "--no-expiry", "--expires-in-days", "3"),
        "exclude each other",
    )


def test_over_the_service_a_caller_manages_their_own_tokens(served: Served) -> None:
    uri = served.url
    env = {"AML_TOKEN": served.token("alice")}
    second = ok(cli(uri, "token", "create", "--name", "second", "--expires-in-days", "2", env=env)).stdout.strip()
    assert second.startswith("aml_pat_") and status_with(served, second) == 200

    import json

    rows = json.loads(ok(cli(uri, "--json", "token", "list", env=env)).stdout)
    assert {r["name"] for r in rows} == {"test alice", "second"} and second not in json.dumps(rows)
    assert {r["principal"] for r in rows} == {"alice"}

    assert_one_line_error(cli(uri, "token", "list", "--principal", "bob", env=env), "only their own tokens")
    assert_one_line_error(cli(uri, "token", "create", "--principal", "bob", env=env), "only their own tokens")

    (second_row,) = [r for r in rows if r["name"] == "second"]
    ok(cli(uri, "token", "revoke", second_row["token_id"], env=env))
    assert status_with(served, second) == 401


def test_over_the_service_without_a_token_the_error_says_what_to_set(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AML_TOKEN", raising=False)
    monkeypatch.delenv("AML_RUN_TOKEN", raising=False)
    assert_one_line_error(cli(served.url, "token", "list"), "AML_TOKEN")
    assert_one_line_error(cli(served.url, "token", "list", env={"AML_TOKEN": "aml_pat_wrong"}), "Unknown token")
