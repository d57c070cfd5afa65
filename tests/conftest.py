"""Shared fixtures: databases (SQLite and PostgreSQL), settings, users.

Each test gets an empty, fully migrated database. On SQLite that is a copy of
a file migrated once per run; on PostgreSQL, a schema of its own per test run
(so several runs on one server do not meet), emptied between tests.
Tests marked ``postgres`` run on PostgreSQL as well as SQLite through the
``database`` fixture's parameters.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers_web import copy_database, make_app, template_database
from sqlalchemy import create_engine, text

from engine import migrate, product  # noqa: F401 - product registers all models
from engine.config import Settings
from engine.db import Database
from engine.models import Base

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption(
        "--no-postgres",
        action="store_true",
        help="Skip the PostgreSQL variants of the database tests.",
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema(request):
    if request.config.getoption("--no-postgres"):
        pytest.skip("PostgreSQL tests disabled with --no-postgres")
    schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _schema_url(schema)
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    yield schema
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


def _sqlite_database(template: Path, tmp_path: Path) -> Database:
    path = tmp_path / "test.sqlite3"
    shutil.copy(template, path)
    return Database(f"sqlite:///{path}")


def _postgres_database(schema: str) -> Database:
    database = Database(_schema_url(schema))
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, sqlite_template, tmp_path) -> Database:
    """An empty migrated database; tests using it run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        db = _sqlite_database(sqlite_template, tmp_path)
    else:
        db = _postgres_database(request.getfixturevalue("postgres_schema"))
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(sqlite_template, tmp_path) -> Database:
    """An empty migrated SQLite database, for tests that need only one backend."""
    db = _sqlite_database(sqlite_template, tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path, database) -> Settings:
    return Settings(
        database_url=database.url.render_as_string(hide_password=False),
        instance_path=tmp_path / "instance",
        secret_key="test-secret-key",
        token_encryption_key="test-token-encryption-key",
    )


@pytest.fixture
def env(tmp_path, tmp_path_factory):
    """The console on a copy of a database with the product and the demo data."""
    database, settings = copy_database(template_database(tmp_path_factory), tmp_path)
    yield SimpleNamespace(
        app=make_app(database, settings), database=database, settings=settings
    )
    database.dispose()
