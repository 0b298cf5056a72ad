"""The store test-suite runs on every store: SQLite, PostgreSQL and the HTTP store over the
workspace service (serving a SQLite file), with the same tests.

On the HTTP store the service acts as the token's principal (``HTTP_PRINCIPAL``, the principal
most tests write as): a record's ``created_by`` / a workspace's owner is that principal, whatever
the call names (the service's rule: nobody creates in another's name). The few tests about
other principals' names or about SQL internals run on the SQL stores only (``helpers.sql_only``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.store.base import AbstractStore
from tests.unit.store.helpers import HTTP_PRINCIPAL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "http"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbstractStore]:
    """A fresh store on an empty database, of each kind."""
    from airflow_aml.store.sql import SqlStore
    from tests.conftest import _postgres_schema_uri

    if request.param == "http":
        from airflow_aml.store.http.store import HttpStore
        from tests.unit.service.served import serve

        served_uri = f"sqlite:///{Path(tmp_path_factory.mktemp('served')) / 'aml.db'}"
        with serve(served_uri) as served:
            http_store = HttpStore(served.uri_for(HTTP_PRINCIPAL))
            http_store.backing = SqlStore(served_uri)  # type: ignore[attr-defined]  # for dump_tables
            yield http_store
            http_store.close()
            http_store.backing.close()  # type: ignore[attr-defined]
        return
    if request.param == "postgres":
        for uri in _postgres_schema_uri():
            sql_store = SqlStore(uri)
            yield sql_store
            sql_store.close()
        return
    sql_store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('store') / 'aml.db'}")
    yield sql_store
    sql_store.close()
