"""Database connections and transactions.

SQLite is the default so that one command runs the product on a laptop;
PostgreSQL is used when several web and worker processes share the load. The
two differ in how a writer gets exclusive access to a process instance:

* PostgreSQL: ``SELECT ... FOR UPDATE`` on the instance row
  (see :func:`engine.instances.lock_instance`).
* SQLite: a write transaction starts with ``BEGIN IMMEDIATE``, which takes the
  database's write lock up front. pysqlite's own transaction handling would
  start a deferred transaction and upgrade it on the first write, which lets
  two writers read the same state and then fail (or worse, interleave), so we
  switch it off and emit BEGIN ourselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .errors import ConfigurationError

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _supported_url(url: str) -> URL:
    """Parse a database URL; refuse one this product cannot run on.

    :raises ConfigurationError: the URL is malformed or names another database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"DATABASE_URL {url!r} is not a database URL; use "
            "sqlite:///path/to/file.sqlite3 or postgresql://user@host/database."
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"DATABASE_URL names a {backend} database, which this product does not "
            "support; use sqlite:///path/to/file.sqlite3 or "
            "postgresql://user@host/database."
        )
    return parsed


class Database:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = _supported_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = _create_engine(self.url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """Open a session whose transaction may write; commit on success."""
        session = self._sessions()
        if self.is_sqlite:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Open a session for reading; it is rolled back at the end."""
        session = self._sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url, *, echo: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, echo=echo, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control away from pysqlite (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
