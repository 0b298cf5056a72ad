"""What every command group shares: global state, error reporting, and output helpers.

Commands stay thin: they parse options, call the SDK (``Workspace``, ``Experiment``, ``Run``) and
print. Any error the SDK raises on purpose becomes one red ``Error: <message>`` line on stderr and
exit code 1; ``AML_DEBUG=1`` re-raises instead, to show the traceback.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from airflow_aml.config import redact
from airflow_aml.exceptions import AmlError, ValidationError

if TYPE_CHECKING:
    from airflow_aml.workspace import Workspace

ENV_DEBUG = "AML_DEBUG"
ENV_WORKSPACE = "AML_WORKSPACE"
DEFAULT_WORKSPACE = "default"

# Errors that mean "the input or the state is wrong", reported without the exception type.
_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (AmlError, ValueError, LookupError, OSError, TimeoutError)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# ---------------------------------------------------------------------------------------- state
@dataclasses.dataclass
class State:
    """The global options, resolved once per invocation."""

    store_uri: str
    workspace_name: str
    json: bool = False
    _workspace: Workspace | None = dataclasses.field(default=None, repr=False)

    def workspace(self) -> Workspace:
        if self._workspace is None:
            from airflow_aml.workspace import Workspace

            self._workspace = Workspace.get(self.workspace_name, store_uri=self.store_uri)
        return self._workspace


_STATE: contextvars.ContextVar[State] = contextvars.ContextVar("airflow_aml_cli_state")


def set_state(value: State) -> None:
    _STATE.set(value)


def state() -> State:
    """The global options of the running command (set by the root callback)."""
    found = _STATE.get(None)
    if found is None:  # a command run without the root callback: environment defaults
        from airflow_aml import config

        found = State(
            store_uri=config.default_store_uri(),
            workspace_name=os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE,
        )
        _STATE.set(found)
    return found


def want_json(local: bool = False) -> bool:
    return local or state().json


# ---------------------------------------------------------------------------------------- errors
def debug_enabled() -> bool:
    return os.environ.get(ENV_DEBUG, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_message(exc: BaseException) -> str:
    text = one_line(str(exc))
    if not isinstance(exc, _EXPECTED_ERRORS):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        text += f" (set {ENV_DEBUG}=1 to see the traceback)"
    elif not text:
        text = type(exc).__name__
    return redact(text)


def print_error(message: str) -> None:
    typer.secho(f"Error: {printable(one_line(redact(message)))}", fg="red", err=True)


def fail(message: str) -> NoReturn:
    print_error(message)
    raise typer.Exit(1)


def info(message: str) -> None:
    """A human note on stderr, so that stdout stays machine-readable (run ids, JSON)."""
    typer.echo(printable(redact(message)), err=True)


# ---------------------------------------------------------------------------------------- input
def parse_pairs(values: Iterable[str] | None, option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a ValidationError names a bad item."""
    pairs: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"{option} {item!r} must look like key=value")
        pairs[key.strip()] = value
    return pairs


# ---------------------------------------------------------------------------------------- output
def console() -> Console:
    """A console on the current stdout; wide when piped, so that ids are never cut."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN/inf are not JSON
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    return str(value)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\x1b``): a tag value or a log-derived
    error must not move the cursor, recolour or clear the terminal that prints it. Newlines and
    tabs stay (tables wrap on them)."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _cell(value: Any) -> Text:
    # Text, not a str: user data such as "[a, b]" must not be read as rich markup.
    return Text(printable(value if isinstance(value, str) else fmt(value)))


def _table(title: str | None, **kwargs: Any) -> Table:
    return Table(title=Text(title) if title else None, min_width=len(title) + 4 if title else None, **kwargs)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = _table(printable(title) if title else None)
    for index, column in enumerate(columns):
        table.add_column(Text(column), no_wrap=index == 0, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(cell) for cell in row))
    console().print(table)


def print_fields(title: str | None, fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column table of field names and values (for ``show`` commands)."""
    table = _table(printable(title) if title else None, show_header=False)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for name, value in fields:
        table.add_row(Text(name), _cell(value))
    console().print(table)


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, Mapping):
        return "\n".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def fmt_time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="seconds")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_metric(value: Any, *, latest: bool = False, max_items: int = 6) -> str:
    """A value of ``Run.get_metrics()``: number, series (list), table (dict) or image path(s)."""
    if isinstance(value, Mapping):
        rows = max((len(v) for v in value.values()), default=0)
        return f"table [{', '.join(map(str, value))}] ({rows} rows)"
    if isinstance(value, list):
        if latest:
            return fmt(value[-1]) if value else ""
        items = [fmt(v) for v in value]
        if len(items) > max_items:
            half = max_items // 2
            items = [*items[:half], "…", *items[-half:]]
        return f"{', '.join(items)} ({len(value)} values)"
    return fmt(value)


def latest_metric(value: Any) -> Any:
    """The latest value of a ``Run.get_metrics()`` entry (tables stay whole)."""
    if isinstance(value, list):
        return value[-1] if value else None
    return value
