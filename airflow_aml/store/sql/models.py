"""The model registry: numbered versions per (workspace, name), tags and properties."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, delete, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_aml.entities import ModelRecord
from airflow_aml.exceptions import ConflictError, DuplicateAttemptError, ModelNotFoundError, RunNotFoundError
from airflow_aml.names import validate_tags
from airflow_aml.store.sql.core import SqlCore, chunked, utcnow
from airflow_aml.store.sql.records import Attributes, empty_attributes, model_record
from airflow_aml.store.sql.registry_queries import tag_filters, upsert_tags, version_row, versions_query
from airflow_aml.store.sql.tables import (
    NAME,
    PROPERTY,
    TAG,
    ModelAttributeRow,
    ModelNameRow,
    ModelVersionRow,
    WorkspaceRow,
)


class ModelStore(SqlCore):
    def create_model_version(
        self,
        workspace: str,
        name: str,
        *,
        path: str,
        datastore: str,
        created_by: str,
        description: str = "",
        run_id: str | None = None,
        sha256: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> ModelRecord:
        tags = validate_tags(tags, f"Model '{name}'")

        def tx(session: Session) -> ModelRecord:
            if run_id is not None:
                try:
                    self._require_run(session, run_id)
                except RunNotFoundError:
                    self._require_workspace(session, workspace)  # the missing workspace is named first
                    raise
            attempt = 1 if idempotency_key else None  # a model version is never retried under its key
            self._refuse_duplicate_attempt(
                session, ModelVersionRow, workspace, idempotency_key, attempt, f"Model '{name}'"
            )
            version = self._next_version(session, workspace, name)
            # Stamped after taking the version, i.e. under the per-name lock: within a name,
            # created_at then grows with the version and "newest first" agrees with it.
            values = {
                "workspace": workspace, "name": name, "version": version, "path": path, "datastore": datastore,
                "created_at": utcnow(), "created_by": created_by, "description": description, "run_id": run_id,
                "sha256": sha256, "idempotency_key": idempotency_key, "idempotency_attempt": attempt,
            }
            # Core statements, not ORM objects: one INSERT .. RETURNING and one executemany, without
            # the unit of work's bookkeeping (it was a third of a registration's CPU time).
            try:
                model_id = session.execute(self._insert_version_stmt, values).scalar_one()
            except IntegrityError as exc:
                if self._is_duplicate_attempt(exc):
                    raise DuplicateAttemptError(
                        f"Model '{name}': idempotency key '{idempotency_key}' is taken"
                    ) from exc
                raise
            attributes = [
                {"model_id": model_id, "kind": kind, "key": key, "value": value}
                for kind, pairs in ((TAG, tags), (PROPERTY, properties)) for key, value in (pairs or {}).items()
            ]
            if attributes:
                session.execute(insert(ModelAttributeRow.__table__), attributes)
            return ModelRecord(
                workspace=workspace, name=name, version=version, path=path, datastore=datastore,
                created_at=values["created_at"], created_by=created_by, description=description, run_id=run_id,
                sha256=sha256, tags=dict(tags or {}), properties=dict(properties or {}),
                idempotency_key=idempotency_key,
            )

        return self._write(tx)

    def _next_version(self, session: Session, workspace: str, name: str) -> int:
        """Atomically take the next version number of ``name``; WorkspaceNotFoundError if the
        workspace does not exist.

        One upsert on the per-name counter: on PostgreSQL it row-locks the counter until commit
        (concurrent registrations queue behind it, including for a brand-new name); on SQLite the
        BEGIN IMMEDIATE write lock already serialises writers. The counter survives deletes, so
        a version number is never handed out twice (which ``max(version) + 1`` would not promise).
        The row to insert is selected from the workspace's row, so the same statement checks the
        workspace: none there, nothing inserted or updated, no version returned.
        """
        version = session.execute(self._take_version_stmt, {"ws": workspace, "model_name": name}).scalar_one_or_none()
        if version is None:
            raise self._workspace_not_found(session, workspace)
        return int(version)

    # Built once per store, with bound parameters: SQLAlchemy then finds the compiled SQL in its
    # cache by the statement's identity instead of rebuilding and hashing a new statement per call.
    @functools.cached_property
    def _take_version_stmt(self) -> Any:
        names, workspaces = ModelNameRow.__table__.c, WorkspaceRow.__table__.c
        source = select(workspaces.name, bindparam("model_name", type_=NAME), literal(1, Integer)).where(
            workspaces.name == bindparam("ws")
        )
        stmt = self._insert(ModelNameRow.__table__).from_select(["workspace", "name", "last_version"], source)
        return stmt.on_conflict_do_update(
            index_elements=["workspace", "name"], set_={"last_version": names.last_version + 1}
        ).returning(names.last_version)

    @functools.cached_property
    def _insert_version_stmt(self) -> Any:
        table = ModelVersionRow.__table__
        return insert(table).returning(table.c.id)

    def get_model_version(self, workspace: str, name: str, version: int | None = None) -> ModelRecord:
        def tx(session: Session) -> ModelRecord:
            self._require_workspace(session, workspace)
            row = self._model_row(session, workspace, name, version)
            return model_record(row, self._model_attributes(session, [row.id])[row.id])

        return self._read(tx)

    def search_models(
        self,
        workspace: str,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        latest_only: bool = False,
    ) -> list[ModelRecord]:
        filters: list[ColumnElement[bool]] = [ModelVersionRow.workspace == workspace]
        if name is not None:
            filters.append(ModelVersionRow.name == name)
        if idempotency_key is not None:
            filters.append(ModelVersionRow.idempotency_key == idempotency_key)
        filters += tag_filters(ModelVersionRow.id, ModelAttributeRow, ModelAttributeRow.model_id, tags)
        stmt = versions_query(ModelVersionRow, filters, latest_only=latest_only, bytewise=self._bytewise)

        def tx(session: Session) -> list[ModelRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(stmt).all()
            attributes = self._model_attributes(session, [row.id for row in rows])
            return [model_record(row, attributes[row.id]) for row in rows]

        return self._read(tx)

    def set_model_tags(self, workspace: str, name: str, version: int, tags: Mapping[str, str]) -> None:
        tags = validate_tags(tags, f"Model '{name}' version {version}")

        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            row = self._model_row(session, workspace, name, version)
            upsert_tags(session, self._insert, ModelAttributeRow, "model_id", row.id, tags)

        self._write(tx)

    def delete_model_version(self, workspace: str, name: str, version: int) -> None:
        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            row = self._model_row(session, workspace, name, version, lock=True)
            if self._model_version_in_use(session, workspace, name, version):
                users = self._model_version_users(session, workspace, name, version)
                named = f" ({', '.join(users)})" if users else ""
                raise ConflictError(
                    f"Model '{name}' version {version} is used by an image in workspace '{workspace}'{named}; "
                    "delete the image first"
                )
            # Explicit rather than ON DELETE CASCADE, which SQLite honours only with foreign_keys on.
            session.execute(delete(ModelAttributeRow).where(ModelAttributeRow.model_id == row.id))
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.id == row.id))

        self._write(tx)

    def _model_version_in_use(self, session: Session, workspace: str, name: str, version: int) -> bool:
        """Whether something (an image) still references the version; the image registry
        (``images.ImageStore``) overrides this. Called inside the deleting transaction, with the
        version row locked."""
        return False

    def _model_version_users(self, session: Session, workspace: str, name: str, version: int) -> list[str]:
        """What uses the version (``"image 'scorer' version 2"``), for the ConflictError."""
        return []

    def _model_row(
        self, session: Session, workspace: str, name: str, version: int | None, *, lock: bool = False
    ) -> ModelVersionRow:
        return version_row(
            session, ModelVersionRow, workspace, name, version, lock=lock, kind="Model", not_found=ModelNotFoundError
        )

    def _model_attributes(self, session: Session, model_ids: Sequence[int]) -> dict[int, Attributes]:
        result = {model_id: empty_attributes() for model_id in model_ids}
        for chunk in chunked(list(result)):
            for attr in session.scalars(select(ModelAttributeRow).where(ModelAttributeRow.model_id.in_(chunk))):
                result[attr.model_id][attr.kind][attr.key] = attr.value
        return result
