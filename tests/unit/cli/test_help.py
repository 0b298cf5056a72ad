"""Help screens read like a standard CLI: no value placeholder on flags, arguments in upper case.

Typer 0.29 prints ``--json <bool>`` (``--json true`` is a usage error) and ``{run_id}``; every
command of the tree is checked, so a new command cannot bring that back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
import typer
from typer.testing import CliRunner

from airflow_aml.cli import app

ROOT = typer.main.get_command(app)


def _paths(command: click.Command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from _paths(sub, (*prefix, name))


COMMANDS = list(_paths(ROOT))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_tree_is_walked() -> None:
    assert ("models", "show") in COMMANDS and ("run", "list") in COMMANDS and len(COMMANDS) > 50


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_help_has_no_typed_flags_or_braced_arguments(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "<bool>" not in text
    assert not re.search(r"\{[a-z_]+\}", text), text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert usage.split("Usage: ", 1)[1].startswith(" ".join(["airflow-aml", *path]).strip() or "airflow-aml")


def test_run_show_help_and_usage_error() -> None:
    text = _help("run", "show")
    assert "airflow-aml run show [OPTIONS] RUN_ID" in text
    assert re.search(r"--json\s+Print JSON", text)  # the flag takes no value
    assert re.search(r"--help\s+-h\s+Show this message", text)

    missing = CliRunner().invoke(app, ["run", "show"])
    assert missing.exit_code == 2 and "Missing argument 'RUN_ID'" in missing.output


def test_a_flag_given_a_value_is_read_as_the_next_argument(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["run", "show", "--json", "true"])
    assert result.exit_code == 1 and "Workspace 'default' not found" in result.output


def test_optional_and_repeatable_arguments_in_usage() -> None:
    assert "models tag [OPTIONS] NAME[:VERSION] KEY=VALUE..." in _help("models", "tag")
    assert "datastore upload [OPTIONS] SRC TARGET_PATH" in _help("datastore", "upload")


def test_value_options_name_their_value() -> None:
    text = _help("run", "list")
    assert re.search(r"--limit\s+N\b", text) and re.search(r"--metric\s+'NAME OP VALUE'", text)
    assert "--include-children,--children" in text  # the SDK's name first, the short one kept
