"""``SqlStore``: the metadata store on SQLAlchemy, for SQLite and PostgreSQL.

The methods live in one mixin per area (workspaces, resources, runs, metrics, activities,
deployments, images, models); this module composes them and owns the lifecycle: engine, schema
check, close. ``DeploymentStore`` comes before ``ImageStore`` and ``ImageStore`` before
``ModelStore``: each overrides the in-use hook of the registry after it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from airflow_aml.store.base import AbstractStore
from airflow_aml.store.sql.activities import ActivityStore
from airflow_aml.store.sql.deployments import DeploymentStore
from airflow_aml.store.sql.engine import create_store_engine, display_uri, normalize_uri
from airflow_aml.store.sql.images import ImageStore
from airflow_aml.store.sql.metrics import MetricStore
from airflow_aml.store.sql.migrate import ensure_schema
from airflow_aml.store.sql.models import ModelStore
from airflow_aml.store.sql.resources import ResourceStore
from airflow_aml.store.sql.run_finish import RunFinishStore
from airflow_aml.store.sql.workspaces import WorkspaceStore


class SqlStore(
    WorkspaceStore, ResourceStore, RunFinishStore, MetricStore, ActivityStore, DeploymentStore, ImageStore, ModelStore,
    AbstractStore,
):
    """The metadata store in a SQL database.

    ``uri``: ``sqlite:////abs/path/aml.db`` (parent folders are created) or
    ``postgresql+psycopg://user:pw@host/db`` (``postgresql://`` and ``postgres://`` also work).
    An empty database gets the schema; one at an older schema revision raises
    ``SchemaOutOfDateError`` naming the upgrade command.
    """

    def __init__(self, uri: str) -> None:
        self._url = normalize_uri(uri)
        super().__init__(create_store_engine(self._url))
        try:
            ensure_schema(self._engine, self._url)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def uri(self) -> str:
        """The store's URI, password masked."""
        return display_uri(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (the workspace service keeps its token table in the same database)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqlStore({self.uri!r})"
