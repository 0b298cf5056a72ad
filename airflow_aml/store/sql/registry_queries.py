"""The query shape the two versioned registries share (model versions and image versions):
filter by tags (``"*"`` = any value), keep only the newest version per name, order newest first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select

from airflow_aml.names import available
from airflow_aml.store.sql.tables import TAG

ANY_VALUE = "*"  # a tag value in a search that matches any value of the key


def tag_filters(owner_id: Any, attributes: Any, attribute_owner_id: Any, tags: Mapping[str, str] | None,
                ) -> list[ColumnElement[bool]]:
    """One EXISTS per tag on the ``attributes`` table (rows of kind TAG pointing at ``owner_id``)."""
    filters: list[ColumnElement[bool]] = []
    for key, value in (tags or {}).items():
        match = exists().where(attribute_owner_id == owner_id, attributes.kind == TAG, attributes.key == key)
        if value != ANY_VALUE:
            match = match.where(attributes.value == value)
        filters.append(match)
    return filters


def versions_query(
    row: Any, filters: list[ColumnElement[bool]], *, latest_only: bool,
    bytewise: Callable[[ColumnElement[str]], ColumnElement[str]],
) -> Select[Any]:
    """Rows of ``row`` (a table with id, name, version, created_at) matching ``filters``; with
    ``latest_only`` the newest matching version of each name; newest first."""
    if latest_only:
        ranked = (
            select(row.id, func.row_number().over(partition_by=row.name, order_by=row.version.desc()).label("rank"))
            .where(*filters)
            .subquery()
        )
        stmt = select(row).where(row.id.in_(select(ranked.c.id).where(ranked.c.rank == 1)))
    else:
        stmt = select(row).where(*filters)
    return stmt.order_by(row.created_at.desc(), bytewise(row.name), row.version.desc())


def upsert_tags(session: Any, insert: Callable[[Any], Any], attributes: Any, owner_column: str, owner_id: int,
                tags: Mapping[str, str]) -> None:
    """Add or overwrite tags of one model/image version (rows of kind TAG in ``attributes``)."""
    if not tags:
        return
    stmt = insert(attributes).values(
        [{owner_column: owner_id, "kind": TAG, "key": key, "value": value} for key, value in tags.items()]
    )
    session.execute(
        stmt.on_conflict_do_update(index_elements=[owner_column, "kind", "key"], set_={"value": stmt.excluded.value})
    )


def version_row(session: Any, row: Any, workspace: str, name: str, version: int | None, *, lock: bool,
                kind: str, not_found: type[Exception]) -> Any:
    """One version of a model/image (the newest when ``version`` is None), optionally locked;
    ``not_found`` names it (``Model 'm' version 3 not found in workspace 'ws'``)."""
    stmt = select(row).where(row.workspace == workspace, row.name == name)
    stmt = stmt.order_by(row.version.desc()).limit(1) if version is None else stmt.where(row.version == version)
    if lock:
        stmt = stmt.with_for_update()
    found = session.scalars(stmt).first()
    if found is None:
        what = f"{kind} '{name}'" if version is None else f"{kind} '{name}' version {version}"
        hint = missing_hint(session, row, workspace, name, kind)
        raise not_found(f"{what} not found in workspace '{workspace}'{hint}")
    return found


def missing_hint(session: Any, row: Any, workspace: str, name: str, kind: str) -> str:
    """What exists instead of a missing version: the versions of ``name``, else the names of ``kind``."""
    versions = list(session.scalars(
        select(row.version).where(row.workspace == workspace, row.name == name)))
    if versions:
        return available(versions, label=f"existing versions of '{name}'")
    names = session.scalars(select(row.name).where(row.workspace == workspace).distinct())
    return available(names, label=f"existing {kind.lower()}s", none=f"no {kind.lower()} exists yet")
