"""Schema migrations, run programmatically (no alembic.ini).

``ensure_schema`` runs when a store opens: an empty database gets the schema, a database at an
older revision is refused with the command that upgrades it. ``upgrade`` is that command.

Migrations run inside one transaction that holds a lock (SQLite: ``BEGIN IMMEDIATE``,
PostgreSQL: a transaction-level advisory lock), so several processes opening a fresh database at
once create the schema exactly once. Alembic is imported lazily: it is only needed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from airflow_aml.exceptions import SchemaOutOfDateError
from airflow_aml.store.sql.engine import WRITE_OPTION, create_store_engine, display_uri, normalize_uri
from airflow_aml.store.sql.transaction import with_retries

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import URL

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# The newest revision in migrations/versions. Kept as a constant so that opening an up-to-date
# store (every run's supervisor and script does) reads one row instead of importing Alembic and
# parsing the migration scripts; a test keeps it equal to Alembic's head.
SCHEMA_HEAD = "0006"

# Arbitrary constant shared by every airflow-aml process ("AMLM" in ASCII).
_PG_MIGRATION_LOCK_KEY = 0x414D4C4D


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    # set_main_option interpolates "%": a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade_command(url: URL) -> str:
    return f"airflow-aml db upgrade --store-uri {display_uri(url)}"


def _stamped_revision(connection: Connection) -> str | None:
    """The revision recorded in ``alembic_version`` (None for an empty database), in plain SQL."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(engine: Engine, url: URL) -> None:
    """Create the schema of an empty database; SchemaOutOfDateError unless it is at head."""

    def read_revision() -> str | None:
        with engine.connect() as connection:
            return _stamped_revision(connection)

    current = with_retries(read_revision, what="reading the metadata schema revision")
    if current == SCHEMA_HEAD:
        return
    head = head_revision()
    if current is not None:
        raise _out_of_date(url, current, head)

    def create() -> None:
        with _migration_lock(engine) as connection:
            # Re-read under the lock: another process may have created it meanwhile.
            now = current_revision(connection)
            if now is None:
                _run_upgrade(connection)
            elif now != head:
                raise _out_of_date(url, now, head)

    with_retries(create, what="creating the metadata schema")


def upgrade(uri: str) -> str:
    """Migrate the database at ``uri`` to the newest schema; returns the revision it is now at.

    Called by ``airflow-aml db upgrade --store-uri <uri>``.
    """
    url = normalize_uri(uri)
    engine = create_store_engine(url)
    head = head_revision()
    try:

        def run() -> None:
            with _migration_lock(engine) as connection:
                current = current_revision(connection)
                if current is not None and not _is_known(current):
                    raise _out_of_date(url, current, head)
                if current != head:
                    _run_upgrade(connection)

        with_retries(run, what="upgrading the metadata schema")
    finally:
        engine.dispose()
    return head


def _run_upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
        yield connection


def _is_known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        found = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        return False
    # get_revision also resolves unique prefixes; only an exact id is a known revision.
    return found is not None and found.revision == revision


def _out_of_date(url: URL, current: str, head: str) -> SchemaOutOfDateError:
    where = display_uri(url)
    if not _is_known(current):
        return SchemaOutOfDateError(
            f"Metadata database {where} is at schema revision {current!r}, which this version of "
            f"airflow-aml does not know (its newest is {head!r}): the database was migrated by a newer "
            "airflow-aml; upgrade the airflow-aml package"
        )
    return SchemaOutOfDateError(
        f"Metadata database {where} is at schema revision {current!r} but this version of airflow-aml "
        f"needs {head!r}; upgrade it with: {upgrade_command(url)}"
    )
