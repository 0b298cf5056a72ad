"""Schema creation, the out-of-date check and the upgrade command."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from airflow_aml.exceptions import SchemaOutOfDateError, ValidationError
from airflow_aml.store import get_store
from airflow_aml.store.sql import SqlStore, migrate, upgrade
from airflow_aml.store.sql.engine import display_uri, normalize_uri
from airflow_aml.store.sql.tables import Base
from tests.unit.store.helpers import new_workspace, sql_only


def _revision(uri: str) -> str | None:
    engine = create_engine(normalize_uri(uri))
    try:
        with engine.connect() as conn:
            return migrate.current_revision(conn)
    finally:
        engine.dispose()


def _execute(uri: str, sql: str) -> None:
    engine = create_engine(normalize_uri(uri))
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_empty_database_gets_the_schema_at_head(sql_store_uri: str) -> None:
    store = SqlStore(sql_store_uri)
    store.close()
    assert _revision(sql_store_uri) == migrate.head_revision() == "0006"
    SqlStore(sql_store_uri).close()  # opening again is a no-op


@sql_only  # the SQL schema itself
def test_migrations_match_the_table_definitions(store: SqlStore) -> None:
    """The hand-written migrations create exactly what tables.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        names = set(inspect(conn).get_table_names())
    assert names == set(Base.metadata.tables) | {"alembic_version"}


def _migrations_with_a_next_revision(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "0007_extra.py").write_text(
        textwrap.dedent(
            '''
            """Test-only next revision."""
            import sqlalchemy as sa
            from alembic import op

            revision = "0007"
            down_revision = "0006"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                with op.batch_alter_table("workspaces") as batch:
                    batch.add_column(sa.Column("extra", sa.Text(), nullable=True))


            def downgrade() -> None:
                with op.batch_alter_table("workspaces") as batch:
                    batch.drop_column("extra")
            '''
        )
    )
    return folder


def test_older_revision_is_refused_with_the_upgrade_command(
    sql_store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore(sql_store_uri)
    new_workspace(store)
    store.close()
    # What a newer airflow-aml would ship: a next migration and the head constant naming it.
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", _migrations_with_a_next_revision(tmp_path))
    monkeypatch.setattr(migrate, "SCHEMA_HEAD", "0007")

    with pytest.raises(SchemaOutOfDateError) as caught:
        SqlStore(sql_store_uri)
    message = str(caught.value)
    command = f"airflow-aml db upgrade --store-uri {display_uri(normalize_uri(sql_store_uri))}"
    assert command in message and "'0006'" in message and "'0007'" in message
    assert _revision(sql_store_uri) == "0006"  # refused, not migrated behind the user's back

    assert upgrade(sql_store_uri) == "0007"
    assert _revision(sql_store_uri) == "0007"
    reopened = SqlStore(sql_store_uri)
    assert reopened.get_workspace("ws").name == "ws"  # data kept across the migration
    reopened.close()
    engine = create_engine(normalize_uri(sql_store_uri))
    with engine.connect() as conn:
        assert "extra" in {c["name"] for c in inspect(conn).get_columns("workspaces")}
    engine.dispose()
    assert upgrade(sql_store_uri) == "0007"  # idempotent


def test_unknown_revision_is_refused(sql_store_uri: str) -> None:
    SqlStore(sql_store_uri).close()
    _execute(sql_store_uri, "UPDATE alembic_version SET version_num = 'ffff9999'")
    with pytest.raises(SchemaOutOfDateError, match="'ffff9999'.*newer airflow-aml"):
        SqlStore(sql_store_uri)
    with pytest.raises(SchemaOutOfDateError, match="newer airflow-aml"):
        upgrade(sql_store_uri)
    assert _revision(sql_store_uri) == "ffff9999"


def test_upgrade_creates_an_empty_database(sql_store_uri: str) -> None:
    assert upgrade(sql_store_uri) == "0006"
    assert _revision(sql_store_uri) == "0006"


def test_a_0001_database_upgrades_to_the_image_registry(sql_store_uri: str) -> None:
    """0002-0006 add the image and deployment tables, the attempt index, the token table and the
    latest-metrics table to a first-release database, keeping its data."""
    from alembic import command

    engine = create_engine(normalize_uri(sql_store_uri))
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0001")
            conn.execute(text(
                "INSERT INTO workspaces (name, description, created_by, created_at, default_datastore, properties) "
                "VALUES ('ws', '', 'alice', CURRENT_TIMESTAMP, 'files', '{}')"
            ))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="'0001'.*'0006'"):
        SqlStore(sql_store_uri)
    assert upgrade(sql_store_uri) == "0006"
    store = SqlStore(sql_store_uri)
    try:
        assert store.get_workspace("ws").created_by == "alice"
        store.create_model_version("ws", "m", path="models/m", datastore="files", created_by="alice")
        image = store.create_image_version("ws", "img", builder="local", created_by="alice", model_ids=["m:1"], spec={})
        assert image.id == "img:1" and image.model_ids == ["m:1"]
    finally:
        store.close()


def test_get_store_builds_a_sql_store(sql_store_uri: str) -> None:
    store = get_store(sql_store_uri, cached=False)
    assert isinstance(store, SqlStore)
    store.close()


def test_uri_normalisation(tmp_path: Path) -> None:
    assert normalize_uri("postgres://u:p@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_uri("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_uri("postgresql+psycopg://u:p@h/db").drivername == "postgresql+psycopg"
    assert display_uri(normalize_uri("postgres://u:secret@h/db")) == "postgresql+psycopg://u:***@h/db"
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a uri"):
        with pytest.raises(ValidationError):
            normalize_uri(bad)


def test_sqlite_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "aml.db"
    store = SqlStore(f"sqlite:///{path}")
    store.close()
    assert path.is_file()
    assert "***" not in store.uri and str(path) in store.uri


def test_schema_head_constant_matches_the_migration_scripts() -> None:
    """ensure_schema trusts SCHEMA_HEAD to skip Alembic on every open: it must name the real head."""
    assert migrate.head_revision() == migrate.SCHEMA_HEAD
