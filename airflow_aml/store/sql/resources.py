"""Datastores and compute targets: named, kind + JSON config, per workspace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_aml.entities import ComputeTargetRecord, DatastoreRecord
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ComputeTargetNotFoundError,
    ConflictError,
    DatastoreNotFoundError,
)
from airflow_aml.names import available
from airflow_aml.store.sql.core import SqlCore, utcnow
from airflow_aml.store.sql.records import compute_target_record, datastore_record
from airflow_aml.store.sql.tables import ComputeTargetRow, DatastoreRow
from airflow_aml.store.sql.types import check_json


class ResourceStore(SqlCore):
    # ----------------------------------------------------------------- datastores
    def register_datastore(
        self, workspace: str, name: str, *, kind: str, config: Mapping[str, Any], overwrite: bool = False
    ) -> DatastoreRecord:
        config_dict = check_json(dict(config), f"Config of datastore '{name}'")

        def tx(session: Session) -> DatastoreRecord:
            ws = self._workspace_row(session, workspace, lock=True)
            row = session.get(DatastoreRow, (workspace, name))
            now = utcnow()
            if row is None:
                row = DatastoreRow(
                    workspace=workspace, name=name, kind=kind, config=config_dict, created_at=now, updated_at=now
                )
                session.add(row)
            elif not overwrite:
                raise AlreadyExistsError(f"Datastore '{name}' already exists in workspace '{workspace}'")
            else:
                row.kind, row.config, row.updated_at = kind, config_dict, now
            if not ws.default_datastore:
                # A workspace created without a default takes its first datastore.
                ws.default_datastore = name
            session.flush()
            return datastore_record(row, ws.default_datastore)

        return self._write(tx)

    def get_datastore(self, workspace: str, name: str) -> DatastoreRecord:
        def tx(session: Session) -> DatastoreRecord:
            ws = self._workspace_row(session, workspace)
            return datastore_record(self._datastore_row(session, workspace, name), ws.default_datastore)

        return self._read(tx)

    def list_datastores(self, workspace: str) -> list[DatastoreRecord]:
        def tx(session: Session) -> list[DatastoreRecord]:
            ws = self._workspace_row(session, workspace)
            rows = session.scalars(select(DatastoreRow).where(DatastoreRow.workspace == workspace))
            return [datastore_record(row, ws.default_datastore) for row in sorted(rows, key=lambda r: r.name)]

        return self._read(tx)

    def delete_datastore(self, workspace: str, name: str) -> None:
        def tx(session: Session) -> None:
            ws = self._workspace_row(session, workspace, lock=True)
            row = self._datastore_row(session, workspace, name)
            if ws.default_datastore == name:
                raise ConflictError(
                    f"Datastore '{name}' is the default datastore of workspace '{workspace}'; "
                    "make another datastore the default before deleting it"
                )
            session.delete(row)

        self._write(tx)

    def set_default_datastore(self, workspace: str, datastore: str) -> None:
        def tx(session: Session) -> None:
            ws = self._workspace_row(session, workspace, lock=True)
            self._datastore_row(session, workspace, datastore)
            ws.default_datastore = datastore

        self._write(tx)

    def _datastore_row(self, session: Session, workspace: str, name: str) -> DatastoreRow:
        row = session.get(DatastoreRow, (workspace, name))
        if row is None:
            names = session.scalars(select(DatastoreRow.name).where(DatastoreRow.workspace == workspace))
            hint = available(names, label="existing datastores")
            raise DatastoreNotFoundError(f"Datastore '{name}' not found in workspace '{workspace}'{hint}")
        return row

    # ----------------------------------------------------------------- compute targets
    def register_compute_target(
        self, workspace: str, name: str, *, kind: str, config: Mapping[str, Any], overwrite: bool = False
    ) -> ComputeTargetRecord:
        config_dict = check_json(dict(config), f"Config of compute target '{name}'")

        def tx(session: Session) -> ComputeTargetRecord:
            self._workspace_row(session, workspace, lock=True)
            row = session.get(ComputeTargetRow, (workspace, name))
            now = utcnow()
            if row is None:
                row = ComputeTargetRow(
                    workspace=workspace, name=name, kind=kind, config=config_dict, created_at=now, updated_at=now
                )
                session.add(row)
            elif not overwrite:
                raise AlreadyExistsError(f"Compute target '{name}' already exists in workspace '{workspace}'")
            else:
                row.kind, row.config, row.updated_at = kind, config_dict, now
            session.flush()
            return compute_target_record(row)

        return self._write(tx)

    def get_compute_target(self, workspace: str, name: str) -> ComputeTargetRecord:
        def tx(session: Session) -> ComputeTargetRecord:
            self._require_workspace(session, workspace)
            return compute_target_record(self._compute_target_row(session, workspace, name))

        return self._read(tx)

    def list_compute_targets(self, workspace: str) -> list[ComputeTargetRecord]:
        def tx(session: Session) -> list[ComputeTargetRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(select(ComputeTargetRow).where(ComputeTargetRow.workspace == workspace))
            return [compute_target_record(row) for row in sorted(rows, key=lambda r: r.name)]

        return self._read(tx)

    def delete_compute_target(self, workspace: str, name: str) -> None:
        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            session.delete(self._compute_target_row(session, workspace, name))

        self._write(tx)

    def _compute_target_row(self, session: Session, workspace: str, name: str) -> ComputeTargetRow:
        row = session.get(ComputeTargetRow, (workspace, name))
        if row is None:
            raise ComputeTargetNotFoundError(f"Compute target '{name}' not found in workspace '{workspace}'")
        return row
