"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Text
from sqlalchemy.types import TypeDecorator

from airflow_aml.exceptions import ValidationError


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out.

    PostgreSQL keeps the offset (timestamptz); SQLite stores a naive string, so values are stored
    as naive UTC there and get their tzinfo back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JsonText(TypeDecorator[Any]):
    """JSON kept as text.

    Not the native JSON type: PostgreSQL's json rejects NaN and Infinity, which metric rows and
    run configurations may legitimately contain, and text reads back identically on both backends.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value == "{}":  # most run configurations and payloads; a fresh dict, as loads gives
            return {}
        return None if value is None else json.loads(value)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def check_json(value: Any, what: str) -> Any:
    """``value`` if it can be stored as JSON, else ValidationError naming ``what``.

    Checked before the write transaction: a failure inside it would surface as a StoreError."""
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON-serialisable: {exc}") from exc
    return value
