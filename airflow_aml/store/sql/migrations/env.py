"""Alembic environment of the airflow-aml metadata store.

Run through ``airflow_aml.store.sql.migrate`` (``airflow-aml db upgrade``), which passes an open
connection already inside the transaction that holds the migration lock; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from airflow_aml.store.sql.tables import Base


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "airflow-aml migrations run through airflow_aml.store.sql.migrate.upgrade(uri) "
            "or `airflow-aml db upgrade --store-uri <uri>`"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
