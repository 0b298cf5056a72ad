"""The command classes of every ``airflow-aml`` command: error reporting and standard help.

Typer's help (0.29) writes flags as ``--json <bool>`` although ``--json true`` is a usage error, and
required arguments as ``{run_id}``. Our commands read like a standard CLI instead: flags carry no
value placeholder, arguments are ``RUN_ID`` (``[RUN_ID]`` when optional, ``...`` when repeatable) in
the usage line, in the help table and in usage errors ("Missing argument 'RUN_ID'"). Only
parameter attributes that Click itself defines are used (``param_type_name``, ``is_flag``,
``metavar``, ``name``, ``required``, ``nargs``), so the fix holds across Typer's releases.

Every group is an ``AmlTyper`` (``typer.Typer`` whose groups are :class:`AmlGroup` and whose
commands are :class:`AmlCommand`), so no command module repeats ``cls=``.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from airflow_aml.cli._common import debug_enabled, error_message, print_error

HELP_OPTION_NAMES = ["-h", "--help"]


def _standardize(param: Any) -> Any:
    """Give a flag no value placeholder and an argument an upper-case name (once per parameter)."""
    if param.metavar is not None:
        return param
    if getattr(param, "param_type_name", None) == "argument":
        param.metavar = (param.name or "value").upper()
    elif getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.metavar = ""  # typer shows the metavar instead of "<bool>"; a flag takes no value
    return param


def _usage_piece(param: Any) -> str:
    name = param.metavar or (param.name or "value").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


class _StandardHelp:
    """Mixed into Typer's command classes: standard placeholders in help and usage lines."""

    options_metavar: str | None

    def get_params(self, ctx: Any) -> list[Any]:
        return [_standardize(param) for param in super().get_params(ctx)]  # type: ignore[misc]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_usage_piece(p) for p in self.get_params(ctx) if getattr(p, "param_type_name", "") == "argument"]
        subcommands = getattr(self, "subcommand_metavar", None)
        if subcommands:
            pieces.append(subcommands)
        return pieces


class AmlCommand(_StandardHelp, TyperCommand):
    """A leaf command (``run show``, ``models list`` ...)."""


class AmlGroup(_StandardHelp, TyperGroup):
    """A command group. The root one turns every exception into one ``Error:`` line and exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors: typer reports them
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            print_error("Interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if debug_enabled():
                raise
            print_error(error_message(exc))
            raise typer.Exit(1) from None


class AmlTyper(typer.Typer):
    """``typer.Typer`` with our group and command classes, help on ``-h`` and no help for no args."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", AmlGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTION_NAMES})
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", AmlCommand)
        return super().command(*args, **kwargs)
