"""The image registry: numbered versions per (workspace, name), tags, properties, model links.

An image version links to the exact model versions it packages (``image_models``); while a link
exists, ``delete_model_version`` refuses with a ConflictError naming the image versions. This
mixin implements that guard by overriding the model registry's hooks, so it must come before
``ModelStore`` in ``SqlStore``'s bases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_aml.entities import ImageRecord, ImageStatus
from airflow_aml.exceptions import (
    ConflictError,
    DuplicateAttemptError,
    ImageNotFoundError,
    ModelNotFoundError,
    ValidationError,
)
from airflow_aml.names import validate_tags
from airflow_aml.references import Reference
from airflow_aml.store.sql.core import SqlCore, chunked, utcnow
from airflow_aml.store.sql.records import Attributes, empty_attributes, image_record
from airflow_aml.store.sql.registry_queries import (
    missing_hint,
    tag_filters,
    upsert_tags,
    version_row,
    versions_query,
)
from airflow_aml.store.sql.tables import (
    PROPERTY,
    TAG,
    ImageAttributeRow,
    ImageModelRow,
    ImageNameRow,
    ImageRow,
    ModelVersionRow,
)
from airflow_aml.store.sql.types import check_json


class ImageStore(SqlCore):
    def create_image_version(
        self,
        workspace: str,
        name: str,
        *,
        builder: str,
        created_by: str,
        model_ids: Sequence[str],
        spec: Mapping[str, Any],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_attempt: int | None = None,
    ) -> ImageRecord:
        models = [Reference.parse_id(model_id, "model") for model_id in model_ids]
        if len(set(models)) != len(models):
            raise ValidationError(f"Image '{name}' lists a model version twice: {list(model_ids)}")
        spec_doc = check_json(dict(spec), f"The spec of image '{name}'")
        tags = validate_tags(tags, f"Image '{name}'")

        def tx(session: Session) -> ImageRecord:
            self._require_workspace(session, workspace)
            # FOR SHARE on the model versions: a concurrent delete_model_version (FOR UPDATE) waits
            # for this transaction and then sees the link, or this one waits and sees no version.
            model_rows = [self._locked_model_version(session, workspace, m, v) for m, v in models]
            attempt = (idempotency_attempt or 1) if idempotency_key else None
            self._refuse_duplicate_attempt(session, ImageRow, workspace, idempotency_key, attempt, f"Image '{name}'")
            version = self._next_image_version(session, workspace, name)
            now = utcnow()
            row = ImageRow(
                workspace=workspace,
                name=name,
                version=version,
                status=ImageStatus.BUILDING.value,
                builder=builder,
                spec=spec_doc,
                description=description,
                created_at=now,
                created_by=created_by,
                updated_at=now,
                digest=None,
                location=None,
                error=None,
                build_log_path=None,
                build_log_tail="",
                activity_id=None,
                idempotency_key=idempotency_key,
                idempotency_attempt=attempt,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                if self._is_duplicate_attempt(exc):
                    raise DuplicateAttemptError(
                        f"Image '{name}': attempt {attempt} of idempotency key '{idempotency_key}' exists already"
                    ) from exc
                raise
            attributes = empty_attributes()
            for kind, values in ((TAG, tags), (PROPERTY, properties)):
                for key, value in (values or {}).items():
                    session.add(ImageAttributeRow(image_id=row.id, kind=kind, key=key, value=value))
                    attributes[kind][key] = value
            for position, model_row in enumerate(model_rows):
                session.add(
                    ImageModelRow(
                        image_id=row.id, model_id=model_row.id, position=position,
                        model_name=model_row.name, model_version=model_row.version,
                    )
                )
            session.flush()
            return image_record(row, attributes, [f"{m}:{v}" for m, v in models])

        return self._write(tx)

    def _locked_model_version(self, session: Session, workspace: str, name: str, version: int) -> ModelVersionRow:
        stmt = (
            select(ModelVersionRow)
            .where(
                ModelVersionRow.workspace == workspace,
                ModelVersionRow.name == name,
                ModelVersionRow.version == version,
            )
            .with_for_update(read=True)
        )
        row = session.scalars(stmt).first()
        if row is None:
            hint = missing_hint(session, ModelVersionRow, workspace, name, "Model")
            raise ModelNotFoundError(f"Model '{name}' version {version} not found in workspace '{workspace}'{hint}")
        return row

    def _next_image_version(self, session: Session, workspace: str, name: str) -> int:
        """Atomically take the next version of ``name``; see ``ModelStore._next_version``."""
        stmt = self._insert(ImageNameRow).values(workspace=workspace, name=name, last_version=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["workspace", "name"], set_={"last_version": ImageNameRow.last_version + 1}
        ).returning(ImageNameRow.last_version)
        return int(session.execute(stmt).scalar_one())

    def update_image(
        self,
        workspace: str,
        name: str,
        version: int,
        *,
        status: ImageStatus | None = None,
        digest: str | None = None,
        location: str | None = None,
        error: str | None = None,
        build_log_path: str | None = None,
        build_log_tail: str | None = None,
        activity_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ImageRecord:
        new_status = None if status is None else ImageStatus(status)

        def tx(session: Session) -> ImageRecord:
            self._require_workspace(session, workspace)
            row = self._image_row(session, workspace, name, version, lock=True)
            current = ImageStatus(row.status)
            if new_status is not None and new_status is not current:
                if current.is_terminal:
                    raise ConflictError(
                        f"Image '{name}' version {version} in workspace '{workspace}' is already "
                        f"{current.value}; its status cannot become {new_status.value}"
                    )
                row.status = new_status.value
            for column, value in (
                ("digest", digest), ("location", location), ("error", error), ("build_log_path", build_log_path),
                ("build_log_tail", build_log_tail), ("activity_id", activity_id),
            ):
                if value is not None:
                    setattr(row, column, value)
            if properties:
                existing = self._image_attributes(session, [row.id])[row.id][PROPERTY]
                for key, value in properties.items():
                    if key in existing:
                        if existing[key] != value:
                            raise ConflictError(
                                f"Property {key!r} of image '{name}' version {version} is already set to "
                                f"{existing[key]!r}; properties cannot be changed"
                            )
                        continue
                    session.add(ImageAttributeRow(image_id=row.id, kind=PROPERTY, key=key, value=value))
            row.updated_at = utcnow()
            session.flush()
            return self._record(session, row)

        return self._write(tx)

    def get_image(self, workspace: str, name: str, version: int | None = None) -> ImageRecord:
        def tx(session: Session) -> ImageRecord:
            self._require_workspace(session, workspace)
            return self._record(session, self._image_row(session, workspace, name, version))

        return self._read(tx)

    def search_images(
        self,
        workspace: str,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        model: str | None = None,
        status: ImageStatus | None = None,
        idempotency_key: str | None = None,
        latest_only: bool = False,
    ) -> list[ImageRecord]:
        filters: list[ColumnElement[bool]] = [ImageRow.workspace == workspace]
        if name is not None:
            filters.append(ImageRow.name == name)
        if status is not None:
            filters.append(ImageRow.status == ImageStatus(status).value)
        if idempotency_key is not None:
            filters.append(ImageRow.idempotency_key == idempotency_key)
        if model is not None:
            link = exists().where(ImageModelRow.image_id == ImageRow.id)
            if ":" in model:
                model_name, model_version = Reference.parse_id(model, "model")
                link = link.where(ImageModelRow.model_name == model_name, ImageModelRow.model_version == model_version)
            else:
                link = link.where(ImageModelRow.model_name == model)
            filters.append(link)
        filters += tag_filters(ImageRow.id, ImageAttributeRow, ImageAttributeRow.image_id, tags)
        stmt = versions_query(ImageRow, filters, latest_only=latest_only, bytewise=self._bytewise)

        def tx(session: Session) -> list[ImageRecord]:
            self._require_workspace(session, workspace)
            rows = session.scalars(stmt).all()
            ids = [row.id for row in rows]
            attributes = self._image_attributes(session, ids)
            links = self._image_model_ids(session, ids)
            return [image_record(row, attributes[row.id], links[row.id]) for row in rows]

        return self._read(tx)

    def set_image_tags(self, workspace: str, name: str, version: int, tags: Mapping[str, str]) -> None:
        tags = validate_tags(tags, f"Image '{name}' version {version}")

        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            row = self._image_row(session, workspace, name, version)
            upsert_tags(session, self._insert, ImageAttributeRow, "image_id", row.id, tags)

        self._write(tx)

    def delete_image_version(self, workspace: str, name: str, version: int) -> None:
        def tx(session: Session) -> None:
            self._require_workspace(session, workspace)
            row = self._image_row(session, workspace, name, version, lock=True)
            users = self._image_version_users(session, row.id)
            if users:
                raise ConflictError(
                    f"Image '{name}' version {version} in workspace '{workspace}' is used by "
                    f"{', '.join(users)}; delete or update the deployment first"
                )
            # Explicit rather than ON DELETE CASCADE, which SQLite honours only with foreign_keys on.
            session.execute(delete(ImageModelRow).where(ImageModelRow.image_id == row.id))
            session.execute(delete(ImageAttributeRow).where(ImageAttributeRow.image_id == row.id))
            session.execute(delete(ImageRow).where(ImageRow.id == row.id))

        self._write(tx)

    # ----------------------------------------------------------------- the model registry's hooks
    def _model_version_in_use(self, session: Session, workspace: str, name: str, version: int) -> bool:
        return bool(self._model_version_users(session, workspace, name, version))

    def _model_version_users(self, session: Session, workspace: str, name: str, version: int) -> list[str]:
        stmt = (
            select(ImageRow.name, ImageRow.version)
            .join(ImageModelRow, ImageModelRow.image_id == ImageRow.id)
            .join(ModelVersionRow, ModelVersionRow.id == ImageModelRow.model_id)
            .where(
                ModelVersionRow.workspace == workspace,
                ModelVersionRow.name == name,
                ModelVersionRow.version == version,
            )
            .order_by(self._bytewise(ImageRow.name), ImageRow.version)
        )
        return [f"image '{image}' version {image_version}" for image, image_version in session.execute(stmt)]

    def _image_version_users(self, session: Session, image_row_id: int) -> list[str]:
        """What serves this image version (overridden by the deployment store); [] = free."""
        return []

    # ----------------------------------------------------------------- helpers
    def _image_row(
        self, session: Session, workspace: str, name: str, version: int | None, *, lock: bool = False
    ) -> ImageRow:
        return version_row(
            session, ImageRow, workspace, name, version, lock=lock, kind="Image", not_found=ImageNotFoundError
        )

    def _record(self, session: Session, row: ImageRow) -> ImageRecord:
        return image_record(
            row, self._image_attributes(session, [row.id])[row.id], self._image_model_ids(session, [row.id])[row.id]
        )

    def _image_attributes(self, session: Session, image_ids: Sequence[int]) -> dict[int, Attributes]:
        result = {image_id: empty_attributes() for image_id in image_ids}
        for chunk in chunked(list(result)):
            for attr in session.scalars(select(ImageAttributeRow).where(ImageAttributeRow.image_id.in_(chunk))):
                result[attr.image_id][attr.kind][attr.key] = attr.value
        return result

    def _image_model_ids(self, session: Session, image_ids: Sequence[int]) -> dict[int, list[str]]:
        result: dict[int, list[str]] = {image_id: [] for image_id in image_ids}
        for chunk in chunked(list(result)):
            stmt = (
                select(ImageModelRow)
                .where(ImageModelRow.image_id.in_(chunk))
                .order_by(ImageModelRow.image_id, ImageModelRow.position)
            )
            for link in session.scalars(stmt):
                result[link.image_id].append(f"{link.model_name}:{link.model_version}")
        return result
