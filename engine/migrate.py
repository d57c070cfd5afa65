"""Create and upgrade the schema with Alembic (never ``create_all``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Database

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's Config is a ConfigParser: a "%" in the URL (a percent-encoded
    # password or a search_path option) must be doubled to survive interpolation.
    url = database.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "heads") -> None:
    """Upgrade the database schema to ``revision`` (default: the latest)."""
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("Upgraded database schema", extra={"revision": revision})


def pending_revisions(database: Database) -> set[str]:
    """Return the head revisions the database has not reached yet."""
    script = ScriptDirectory.from_config(alembic_config(database))
    with database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(script.get_heads())
    return heads - current if not heads <= current else set()
