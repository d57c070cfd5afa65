"""Alembic environment: runs the engine's migrations on the configured database."""

from alembic import context
from sqlalchemy import pool

from engine.db import Database
from engine.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return

    database = Database(config.get_main_option("sqlalchemy.url"))
    engine = database.engine.execution_options(poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    database.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
