"""The SQL metadata store (SQLite, PostgreSQL) and its migrations."""

from __future__ import annotations

from airflow_aml.store.sql.migrate import upgrade
from airflow_aml.store.sql.store import SqlStore

__all__ = ["SqlStore", "upgrade"]
