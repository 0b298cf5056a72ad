"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Airflow reads $AIRFLOW_HOME when first imported: every test session gets a throw-away one (never
# the developer's own), and no example DAGs, whichever test module imports Airflow first.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="aml-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags_examples")

if TYPE_CHECKING:
    from airflow_aml.store.sql import SqlStore

# ----------------------------------------------------------------- metadata store
# Every test that takes ``store`` (or ``sql_store_uri``) runs on SQLite and, when
# AML_TEST_POSTGRES_URI names a server, on PostgreSQL too, in a schema of its own.
# On CI (CI=true) a missing AML_TEST_POSTGRES_URI fails the PostgreSQL variant instead of skipping it.
# (Not named ``store_uri``: tests/unit/conftest.py has a SQLite-only fixture of that name.)

POSTGRES_URI_ENV = "AML_TEST_POSTGRES_URI"


def _postgres_schema_uri() -> Iterator[str]:
    from sqlalchemy import create_engine

    from airflow_aml.store.sql.engine import normalize_uri

    base = os.environ.get(POSTGRES_URI_ENV)
    if not base:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{POSTGRES_URI_ENV} is not set: on CI the store tests must also run on PostgreSQL")
        pytest.skip(f"{POSTGRES_URI_ENV} is not set")
    url = normalize_uri(base)
    schema = f"aml_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store_uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an empty metadata database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'aml.db'}"
    else:
        yield from _postgres_schema_uri()


@pytest.fixture
def store(sql_store_uri: str) -> Iterator[SqlStore]:
    """A fresh ``SqlStore`` on an empty database."""
    from airflow_aml.store.sql import SqlStore

    sql_store = SqlStore(sql_store_uri)
    yield sql_store
    sql_store.close()
