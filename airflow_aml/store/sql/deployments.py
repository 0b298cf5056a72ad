"""Deployments (web services): one row per (workspace, name), updated in place.

A deployment points at the image version it should serve (``image_ref``) and the one its
replicas serve now (``serving_image_ref``); both are foreign keys to ``images``, and while
either points at an image version, ``delete_image_version`` refuses with a ConflictError naming
the deployment. This mixin implements that guard by overriding the image registry's hook, so it
must come before ``ImageStore`` in ``SqlStore``'s bases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_aml.entities import DeploymentRecord, DeploymentState
from airflow_aml.exceptions import AlreadyExistsError, ConflictError, DeploymentNotFoundError, ImageNotFoundError
from airflow_aml.names import available, validate_tags
from airflow_aml.references import Reference
from airflow_aml.store.sql.core import SqlCore, utcnow
from airflow_aml.store.sql.records import deployment_record
from airflow_aml.store.sql.registry_queries import missing_hint
from airflow_aml.store.sql.tables import DeploymentRow, ImageRow
from airflow_aml.store.sql.types import check_json

# update_deployment(error=CLEAR) sets the column back to NULL.
CLEAR = ""


class DeploymentStore(SqlCore):
    def create_deployment(
        self,
        workspace: str,
        name: str,
        *,
        target: str,
        image_id: str,
        created_by: str,
        config: Mapping[str, Any],
        scoring_uri: str | None = None,
        primary_key_hash: str | None = None,
        secondary_key_hash: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        runtime: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> DeploymentRecord:
        config_doc = check_json(dict(config), f"The config of deployment '{name}'")
        runtime_doc = check_json(dict(runtime or {}), f"The runtime state of deployment '{name}'")
        tags = validate_tags(tags, f"Deployment '{name}'")

        def tx(session: Session) -> DeploymentRecord:
            self._require_workspace(session, workspace)
            if self._deployment_row(session, workspace, name, required=False) is not None:
                raise AlreadyExistsError(f"Deployment '{name}' already exists in workspace '{workspace}'")
            image = self._locked_image(session, workspace, image_id)
            now = utcnow()
            row = DeploymentRow(
                workspace=workspace, name=name, target=target, state=DeploymentState.TRANSITIONING.value,
                image_ref=image.id, image_id=f"{image.name}:{image.version}", serving_image_ref=None,
                serving_image_id=None, generation=1, config=config_doc, runtime=runtime_doc,
                tags=dict(tags or {}), properties=dict(properties or {}), description=description,
                scoring_uri=scoring_uri, primary_key_hash=primary_key_hash, secondary_key_hash=secondary_key_hash,
                error=None, activity_id=None, created_at=now, created_by=created_by, updated_at=now,
                idempotency_key=idempotency_key,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # created concurrently (PostgreSQL)
                raise AlreadyExistsError(f"Deployment '{name}' already exists in workspace '{workspace}'") from exc
            return deployment_record(row)

        return self._write(tx)

    def update_deployment(
        self,
        workspace: str,
        name: str,
        *,
        state: DeploymentState | None = None,
        image_id: str | None = None,
        serving_image_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        runtime: Mapping[str, Any] | None = None,
        scoring_uri: str | None = None,
        primary_key_hash: str | None = None,
        secondary_key_hash: str | None = None,
        error: str | None = None,
        activity_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        next_generation: bool = False,
        if_generation: int | None = None,
    ) -> DeploymentRecord:
        """Change the given fields (None = unchanged; ``error=CLEAR`` clears the error).

        ``next_generation`` bumps the generation (a new desired state for the target);
        ``if_generation`` makes the update conditional: a ConflictError when the row has moved
        on to another generation (a supervisor must not report on an update it was not asked for).
        """
        new_state = None if state is None else DeploymentState(state)
        config_doc = None if config is None else check_json(dict(config), f"The config of deployment '{name}'")
        runtime_doc = None if runtime is None else check_json(dict(runtime), f"The runtime of deployment '{name}'")
        tags = None if tags is None else validate_tags(tags, f"Deployment '{name}'")

        def tx(session: Session) -> DeploymentRecord:
            self._require_workspace(session, workspace)
            row = self._deployment_row(session, workspace, name, lock=True)
            if if_generation is not None and row.generation != if_generation:
                raise ConflictError(
                    f"Deployment '{name}' in workspace '{workspace}' is at generation {row.generation}, "
                    f"not {if_generation}"
                )
            if image_id is not None:
                image = self._locked_image(session, workspace, image_id)
                row.image_ref, row.image_id = image.id, f"{image.name}:{image.version}"
            if serving_image_id is not None:
                image = self._locked_image(session, workspace, serving_image_id)
                row.serving_image_ref, row.serving_image_id = image.id, f"{image.name}:{image.version}"
            if new_state is not None:
                row.state = new_state.value
            if config_doc is not None:
                row.config = config_doc
            if runtime_doc is not None:
                row.runtime = runtime_doc
            if tags is not None:
                row.tags = {**(row.tags or {}), **dict(tags)}
            for column, value in (
                ("scoring_uri", scoring_uri), ("primary_key_hash", primary_key_hash),
                ("secondary_key_hash", secondary_key_hash), ("activity_id", activity_id),
            ):
                if value is not None:
                    setattr(row, column, value)
            if error is not None:
                row.error = error or None
            if next_generation:
                row.generation += 1
            row.updated_at = utcnow()
            session.flush()
            return deployment_record(row)

        return self._write(tx)

    def get_deployment(self, workspace: str, name: str) -> DeploymentRecord:
        def tx(session: Session) -> DeploymentRecord:
            self._require_workspace(session, workspace)
            return deployment_record(self._deployment_row(session, workspace, name))

        return self._read(tx)

    def search_deployments(
        self,
        workspace: str,
        *,
        target: str | None = None,
        state: DeploymentState | None = None,
        image: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> list[DeploymentRecord]:
        filters: list[ColumnElement[bool]] = [DeploymentRow.workspace == workspace]
        if target is not None:
            filters.append(DeploymentRow.target == target)
        if state is not None:
            filters.append(DeploymentRow.state == DeploymentState(state).value)
        if idempotency_key is not None:
            filters.append(DeploymentRow.idempotency_key == idempotency_key)
        if image is not None:
            if ":" in image:
                Reference.parse_id(image, "image")
                filters.append(or_(DeploymentRow.image_id == image, DeploymentRow.serving_image_id == image))
            else:
                prefix = image.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
                filters.append(or_(
                    DeploymentRow.image_id.like(prefix, escape="\\"),
                    DeploymentRow.serving_image_id.like(prefix, escape="\\"),
                ))
        stmt = select(DeploymentRow).where(*filters).order_by(self._bytewise(DeploymentRow.name))

        def tx(session: Session) -> list[DeploymentRecord]:
            self._require_workspace(session, workspace)
            records = [deployment_record(row) for row in session.scalars(stmt)]
            # Tags live in a JSON column (a deployment has few, and few deployments exist): filter here.
            wanted = dict(tags or {})
            return [
                r for r in records
                if all(key in r.tags and (value == "*" or r.tags[key] == value) for key, value in wanted.items())
            ]

        return self._read(tx)

    def delete_deployment(self, workspace: str, name: str) -> None:
        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            row = self._deployment_row(session, workspace, name, lock=True)
            session.execute(delete(DeploymentRow).where(DeploymentRow.id == row.id))

        self._write(tx)

    # ----------------------------------------------------------------- the image registry's hook
    def _image_version_users(self, session: Session, image_row_id: int) -> list[str]:
        stmt = (
            select(DeploymentRow.name)
            .where(or_(DeploymentRow.image_ref == image_row_id, DeploymentRow.serving_image_ref == image_row_id))
            .order_by(self._bytewise(DeploymentRow.name))
        )
        return [f"deployment '{name}'" for name in session.scalars(stmt)]

    # ----------------------------------------------------------------- helpers
    def _deployment_row(
        self, session: Session, workspace: str, name: str, *, lock: bool = False, required: bool = True
    ) -> DeploymentRow:
        stmt = select(DeploymentRow).where(DeploymentRow.workspace == workspace, DeploymentRow.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).first()
        if row is None and required:
            names = session.scalars(select(DeploymentRow.name).where(DeploymentRow.workspace == workspace))
            hint = available(names, label="existing deployments", none="no deployment exists yet")
            raise DeploymentNotFoundError(f"Deployment '{name}' not found in workspace '{workspace}'{hint}")
        return row  # type: ignore[return-value]

    def _locked_image(self, session: Session, workspace: str, image_id: str) -> ImageRow:
        """The image version, locked FOR SHARE: a concurrent delete waits and then sees the link."""
        name, version = Reference.parse_id(image_id, "image")
        stmt = (
            select(ImageRow)
            .where(ImageRow.workspace == workspace, ImageRow.name == name, ImageRow.version == version)
            .with_for_update(read=True)
        )
        row = session.scalars(stmt).first()
        if row is None:
            hint = missing_hint(session, ImageRow, workspace, name, "Image")
            raise ImageNotFoundError(f"Image '{name}' version {version} not found in workspace '{workspace}'{hint}")
        return row
