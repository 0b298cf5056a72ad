"""Helpers shared by the store tests."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from airflow_aml.entities import Metric
from airflow_aml.store.sql import SqlStore
from airflow_aml.store.sql.tables import Base

WS = "ws"
# Who the HTTP store's token acts as (the service fills created_by / owner with it).
HTTP_PRINCIPAL = "alice"

def refusal(store: Any, message: str) -> str:
    """The ``match`` of a refused wrongly-typed value: the store's own message, or over HTTP the
    client's (a value that is not JSON) or the service's schema message (a wrong type)."""
    if not getattr(store, "served", False):
        return message
    return f"{message}|cannot be sent to the workspace service as JSON|Invalid request: body"


# A test about SQL internals or about records naming other principals: SQLite and PostgreSQL only.
sql_only = pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def new_workspace(store: SqlStore, name: str = WS, *, default_datastore: str = "") -> str:
    store.create_workspace(name, description="test", created_by="alice", default_datastore=default_datastore)
    return name


def dump_tables(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove that a refused call changed nothing."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    # The HTTP store's fixture notes the database its service serves (``backing``).
    engine = store._engine if isinstance(store, SqlStore) else store.backing.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            dump[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def assert_utc(record: Any) -> None:
    """Every datetime field of ``record`` is timezone-aware UTC."""
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, datetime):
            assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 0, field.name
            assert value.tzinfo is not None
            assert abs((datetime.now(UTC) - value).total_seconds()) < 600, field.name


def scalar(name: str, value: float | None, step: int, timestamp: float | None = None) -> Metric:
    return Metric(name=name, value=value, step=step, timestamp=time.time() if timestamp is None else timestamp)


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
