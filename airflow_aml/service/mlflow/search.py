"""MLflow's search syntax for runs, evaluated on our records.

    metrics.acc > 0.5 and params.lr = '0.1' and tags.`mlflow.runName` LIKE 'fold-%'
    order_by: ["metrics.acc DESC", "attributes.start_time"]

A filter is clauses joined by AND (MLflow has no OR); a clause is ``<entity>.<key> <comparator>
<value>``: metrics compare numbers (``= != < <= > >=``), params, tags and string attributes
compare strings (``= != LIKE ILIKE IN NOT IN``), ``start_time``/``end_time`` compare numbers
(milliseconds). Written here rather than taken from ``mlflow.utils.search_utils`` so that the
service does not need the ``mlflow`` package. A run lacking the metric, param or tag of a clause
does not match it; in ``order_by`` runs lacking the key sort last, as on MLflow's server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_aml.service.mlflow.errors import MlflowError

_ENTITIES = {
    "metric": "metric", "metrics": "metric", "param": "param", "params": "param", "parameter": "param",
    "parameters": "param", "tag": "tag", "tags": "tag", "attribute": "attribute", "attributes": "attribute",
    "attr": "attribute", "run": "attribute",
}
_ATTRIBUTE_ALIASES = {"run_id": "run_id", "run_uuid": "run_id", "run_name": "run_name", "status": "status",
                      "user_id": "user_id", "start_time": "start_time", "end_time": "end_time",
                      "artifact_uri": "artifact_uri", "lifecycle_stage": "lifecycle_stage",
                      "experiment_id": "experiment_id",
                      # of experiments and logged models
                      "name": "name", "model_id": "model_id", "source_run_id": "source_run_id"}
_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
_NUMERIC_OPS = ("<=", ">=", "!=", "=", "<", ">")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<backtick>`[^`]*`)
      | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][\w.:/-]*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    entity: str  # metric / param / tag / attribute
    key: str
    op: str
    value: Any  # a float for numeric clauses, a str, or a tuple of str for IN


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise MlflowError(f"Invalid filter {text!r}: cannot read from {text[position:][:30]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    quote = token[0]
    return token[1:-1].replace(quote * 2, quote)


def _identifier(kind: str, token: str) -> tuple[str, str]:
    """(entity, key) of ``metrics.acc``, ``tags.`mlflow.runName```, ``status`` ..."""
    if kind == "backtick":
        return "attribute", _attribute(token[1:-1])
    if kind != "word" or not (token[0].isalpha() or token[0] == "_"):
        raise MlflowError(f"Invalid filter: expected an identifier such as metrics.acc, not {token!r}")
    prefix, _, key = token.partition(".")
    if not key:
        return "attribute", _attribute(prefix)
    entity = _ENTITIES.get(prefix.lower())
    if entity is None:
        raise MlflowError(f"Invalid filter: unknown entity {prefix!r} (metrics, params, tags or attributes)")
    return entity, _attribute(key) if entity == "attribute" else key


def _attribute(name: str) -> str:
    attribute = _ATTRIBUTE_ALIASES.get(name)
    if attribute is None:
        raise MlflowError(f"Invalid attribute {name!r}: one of {', '.join(sorted(_ATTRIBUTE_ALIASES))}")
    return attribute


def parse_filter(text: str | None) -> list[Clause]:
    tokens = _tokens(text or "")
    clauses: list[Clause] = []
    position = 0
    while position < len(tokens):
        if clauses:
            if tokens[position][1].upper() != "AND":
                raise MlflowError(f"Invalid filter {text!r}: clauses are joined by AND")
            position += 1
        clause, position = _clause(tokens, position, text or "")
        clauses.append(clause)
    return clauses


def _clause(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[Clause, int]:
    def at(index: int) -> tuple[str, str]:
        if index >= len(tokens):
            raise MlflowError(f"Invalid filter {text!r}: it ends in the middle of a clause")
        return tokens[index]

    at(position)
    entity, key = _identifier_at(tokens, position, text)
    position += 2 if tokens[position][1].endswith(".") else 1
    _, op = at(position)
    op = op.upper()
    position += 1
    if op == "NOT":
        if at(position)[1].upper() != "IN":
            raise MlflowError(f"Invalid filter {text!r}: NOT must be followed by IN")
        op, position = "NOT IN", position + 1
    op = "!=" if op == "<>" else op
    numeric = entity == "metric" or (entity == "attribute" and key in _NUMERIC_ATTRIBUTES)
    allowed = _NUMERIC_OPS if numeric else _STRING_OPS
    if op not in allowed:
        raise MlflowError(f"Invalid comparator {op!r} for {entity} {key!r}: one of {', '.join(allowed)}")
    if op in ("IN", "NOT IN"):
        values, position = _list(tokens, position, text)
        return Clause(entity, key, op, tuple(values)), position
    kind, token = at(position)
    if numeric:
        not_a_number = MlflowError(f"Invalid filter {text!r}: {entity} {key!r} compares with a number, not {token}")
        if kind != "word":
            raise not_a_number
        try:
            value: Any = float(token)
        except ValueError:
            raise not_a_number from None
    else:
        if kind != "string":
            raise MlflowError(f"Invalid filter {text!r}: {entity} {key!r} compares with a quoted string, not {token}")
        value = _unquote(token)
    return Clause(entity, key, op, value), position + 1


def _identifier_at(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[str, str]:
    kind, token = tokens[position]
    # tags.`mlflow.runName` / metrics."my metric": the entity word ends in '.', the key is quoted.
    if kind == "word" and token.endswith(".") and position + 1 < len(tokens):
        next_kind, next_token = tokens[position + 1]
        if next_kind in ("backtick", "string"):
            entity = _ENTITIES.get(token[:-1].lower())
            if entity is None:
                raise MlflowError(f"Invalid filter {text!r}: unknown entity {token[:-1]!r}")
            key = next_token[1:-1]
            return entity, _attribute(key) if entity == "attribute" else key
    return _identifier(kind, token)


def _list(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[list[str], int]:
    if position >= len(tokens) or tokens[position][1] != "(":
        raise MlflowError(f"Invalid filter {text!r}: IN takes a list such as ('a', 'b')")
    values: list[str] = []
    position += 1
    while position < len(tokens):
        kind, token = tokens[position]
        if kind != "string":
            raise MlflowError(f"Invalid filter {text!r}: IN lists quoted strings, not {token}")
        values.append(_unquote(token))
        position += 1
        if position < len(tokens) and tokens[position][1] == ",":
            position += 1
            continue
        if position < len(tokens) and tokens[position][1] == ")":
            return values, position + 1
        break
    raise MlflowError(f"Invalid filter {text!r}: an IN list is not closed")


def parse_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    keys = []
    for item in items or ():
        words = item.strip().rsplit(None, 1)
        ascending = True
        if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
            ascending = words[1].upper() == "ASC"
            item = words[0]
        tokens = _tokens(item)
        if not tokens:
            raise MlflowError(f"Invalid order_by {item!r}")
        entity, key = _identifier_at(tokens, 0, item)
        keys.append(OrderKey(entity, key, ascending))
    return keys


# ----------------------------------------------------------------------------- evaluation
# A candidate run as the filter sees it: (entity, key) -> value, or None when the run lacks it.
Lookup = Callable[[str, str], Any]


def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def matches(clauses: Sequence[Clause], lookup: Lookup) -> bool:
    return all(_matches(clause, lookup(clause.entity, clause.key)) for clause in clauses)


def _matches(clause: Clause, value: Any) -> bool:
    if value is None:
        return False
    op, wanted = clause.op, clause.value
    if isinstance(wanted, float):
        value = float(value)
        if math.isnan(value):
            return False
        return {"=": value == wanted, "!=": value != wanted, "<": value < wanted, "<=": value <= wanted,
                ">": value > wanted, ">=": value >= wanted}[op]
    value = str(value)
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    if op in ("LIKE", "ILIKE"):
        return _like(wanted, ignore_case=op == "ILIKE").fullmatch(value) is not None
    return (value in wanted) == (op == "IN")


def sort(items: list[Any], keys: Sequence[OrderKey], lookup_of: Callable[[Any], Lookup]) -> list[Any]:
    """``items`` ordered by ``keys`` (stable: the caller's order breaks ties); missing values last."""
    ordered = list(items)
    for key in reversed(keys):
        present = [item for item in ordered if lookup_of(item)(key.entity, key.key) is not None]
        missing = [item for item in ordered if lookup_of(item)(key.entity, key.key) is None]
        present.sort(key=lambda item, key=key: _sortable(lookup_of(item)(key.entity, key.key)),
                     reverse=not key.ascending)
        ordered = present + missing
    return ordered


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))
