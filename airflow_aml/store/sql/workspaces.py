"""Workspaces, experiments, role assignments and secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_aml.entities import ExperimentRecord, Role, RoleAssignment, WorkspaceRecord
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ConflictError,
    ExperimentNotFoundError,
    NotFoundError,
    SecretNotFoundError,
)
from airflow_aml.names import available
from airflow_aml.store.sql.core import SqlCore, utcnow
from airflow_aml.store.sql.records import experiment_record, role_assignment_record, workspace_record
from airflow_aml.store.sql.tables import DatastoreRow, ExperimentRow, RoleAssignmentRow, SecretRow, WorkspaceRow
from airflow_aml.store.sql.types import check_json


class WorkspaceStore(SqlCore):
    # ----------------------------------------------------------------- workspaces
    def create_workspace(
        self, name: str, *, description: str, created_by: str, default_datastore: str,
        datastore: Mapping[str, Any] | None = None, owner: str | None = None,
    ) -> WorkspaceRecord:
        datastore_config = None if datastore is None else check_json(
            dict(datastore["config"]), f"Config of datastore '{default_datastore}'")

        def tx(session: Session) -> WorkspaceRecord:
            if session.get(WorkspaceRow, name) is not None:
                raise AlreadyExistsError(f"Workspace '{name}' already exists")
            row = WorkspaceRow(
                name=name,
                description=description,
                created_by=created_by,
                created_at=utcnow(),
                default_datastore=default_datastore,
                properties={},
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # created by a concurrent caller (PostgreSQL)
                raise AlreadyExistsError(f"Workspace '{name}' already exists") from exc
            # In the same transaction: another process that finds the workspace also finds its
            # default datastore and its Owner (the first tasks of two DAG runs open it at once).
            now = row.created_at
            if datastore is not None and datastore_config is not None:
                session.add(DatastoreRow(workspace=name, name=default_datastore, kind=str(datastore["kind"]),
                                         config=datastore_config, created_at=now, updated_at=now))
            if owner is not None:
                session.add(RoleAssignmentRow(workspace=name, principal=owner, role=Role.OWNER.value, created_at=now))
            session.flush()
            return workspace_record(row)

        return self._write(tx)

    def get_workspace(self, name: str) -> WorkspaceRecord:
        return self._read(lambda session: workspace_record(self._workspace_row(session, name)))

    def list_workspaces(self) -> list[WorkspaceRecord]:
        def tx(session: Session) -> list[WorkspaceRecord]:
            rows = session.scalars(select(WorkspaceRow))
            # Sorted here, not in SQL: PostgreSQL's collation would order differently from SQLite.
            return [workspace_record(row) for row in sorted(rows, key=lambda row: row.name)]

        return self._read(tx)

    # ----------------------------------------------------------------- experiments
    def get_or_create_experiment(self, workspace: str, name: str) -> ExperimentRecord:
        def tx(session: Session) -> ExperimentRecord:
            self._require_workspace(session, workspace)
            return experiment_record(self._ensure_experiment(session, workspace, name))

        return self._write(tx)

    def get_experiment(self, workspace: str, name: str) -> ExperimentRecord:
        def tx(session: Session) -> ExperimentRecord:
            self._require_workspace(session, workspace)
            row = session.get(ExperimentRow, (workspace, name))
            if row is None:
                names = session.scalars(select(ExperimentRow.name).where(ExperimentRow.workspace == workspace))
                hint = available(names, label="existing experiments", none="no experiment exists yet")
                raise ExperimentNotFoundError(f"Experiment '{name}' not found in workspace '{workspace}'{hint}")
            return experiment_record(row)

        return self._read(tx)

    def list_experiments(self, workspace: str) -> list[ExperimentRecord]:
        def tx(session: Session) -> list[ExperimentRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(select(ExperimentRow).where(ExperimentRow.workspace == workspace))
            return [experiment_record(row) for row in sorted(rows, key=lambda row: row.name)]

        return self._read(tx)

    # ----------------------------------------------------------------- roles
    def assign_role(self, workspace: str, principal: str, role: Role) -> RoleAssignment:
        role = Role(role)

        def tx(session: Session) -> RoleAssignment:
            self._workspace_row(session, workspace, lock=True)
            row = session.get(RoleAssignmentRow, (workspace, principal))
            if row is None:
                row = RoleAssignmentRow(workspace=workspace, principal=principal, role=role.value, created_at=utcnow())
                session.add(row)
            else:
                if row.role == Role.OWNER and role is not Role.OWNER:
                    self._refuse_if_last_owner(session, workspace, principal, "demote")
                row.role = role.value
                row.created_at = utcnow()
            session.flush()
            return role_assignment_record(row)

        return self._write(tx)

    def remove_role(self, workspace: str, principal: str) -> None:
        def tx(session: Session) -> None:
            self._workspace_row(session, workspace, lock=True)
            row = session.get(RoleAssignmentRow, (workspace, principal))
            if row is None:
                raise NotFoundError(f"Principal '{principal}' has no role in workspace '{workspace}'")
            if row.role == Role.OWNER:
                self._refuse_if_last_owner(session, workspace, principal, "remove")
            session.delete(row)

        self._write(tx)

    def _refuse_if_last_owner(self, session: Session, workspace: str, principal: str, action: str) -> None:
        owners = session.scalar(
            select(func.count())
            .select_from(RoleAssignmentRow)
            .where(RoleAssignmentRow.workspace == workspace, RoleAssignmentRow.role == Role.OWNER.value)
        )
        if (owners or 0) <= 1:
            raise ConflictError(
                f"Cannot {action} '{principal}': the last Owner of workspace '{workspace}'; assign another Owner first"
            )

    def get_role(self, workspace: str, principal: str) -> Role | None:
        def tx(session: Session) -> Role | None:
            self._require_workspace(session, workspace)
            row = session.get(RoleAssignmentRow, (workspace, principal))
            return None if row is None else Role(row.role)

        return self._read(tx)

    def list_role_assignments(self, workspace: str) -> list[RoleAssignment]:
        def tx(session: Session) -> list[RoleAssignment]:
            self._require_workspace(session, workspace)
            rows = session.scalars(select(RoleAssignmentRow).where(RoleAssignmentRow.workspace == workspace))
            return [role_assignment_record(row) for row in sorted(rows, key=lambda row: row.principal)]

        return self._read(tx)

    # ----------------------------------------------------------------- secrets
    def put_secret(self, workspace: str, name: str, ciphertext: bytes) -> None:
        blob = bytes(ciphertext)

        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            now = utcnow()
            stmt = self._insert(SecretRow).values(
                workspace=workspace, name=name, ciphertext=blob, created_at=now, updated_at=now
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["workspace", "name"],
                    set_={"ciphertext": stmt.excluded.ciphertext, "updated_at": stmt.excluded.updated_at},
                )
            )

        self._write(tx)

    def get_secret(self, workspace: str, name: str) -> bytes:
        def tx(session: Session) -> bytes:
            self._require_workspace(session, workspace)
            blob = session.scalar(
                select(SecretRow.ciphertext).where(SecretRow.workspace == workspace, SecretRow.name == name)
            )
            if blob is None:
                raise SecretNotFoundError(f"Secret '{name}' not found in workspace '{workspace}'")
            return bytes(blob)

        return self._read(tx)

    def list_secret_names(self, workspace: str) -> list[str]:
        def tx(session: Session) -> list[str]:
            self._require_workspace(session, workspace)
            return sorted(session.scalars(select(SecretRow.name).where(SecretRow.workspace == workspace)))

        return self._read(tx)

    def delete_secret(self, workspace: str, name: str) -> None:
        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            result = session.execute(delete(SecretRow).where(SecretRow.workspace == workspace, SecretRow.name == name))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise SecretNotFoundError(f"Secret '{name}' not found in workspace '{workspace}'")

        self._write(tx)
