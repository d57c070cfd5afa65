"""Migrations: an empty database upgrades to a schema that matches the models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import POSTGRES_URL, _schema_url
from sqlalchemy import MetaData, create_engine, inspect, text

from engine import migrate, product  # noqa: F401 - registers every model
from engine.db import Database
from engine.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path):
    """A database with no tables at all: a new SQLite file or a new schema."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'new' / 'empty.sqlite3'}")
        yield database
        database.dispose()
        return

    if request.config.getoption("--no-postgres"):
        pytest.skip("PostgreSQL tests disabled with --no-postgres")
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(_schema_url(schema))
    try:
        yield database
    finally:
        database.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def table_names(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def test_empty_database_has_every_revision_pending(empty_database):
    heads = ScriptDirectory.from_config(
        migrate.alembic_config(empty_database)
    ).get_heads()

    assert table_names(empty_database) == set()
    assert migrate.pending_revisions(empty_database) == set(heads)


def test_upgrade_creates_every_table_of_the_models(empty_database):
    migrate.upgrade(empty_database)

    assert table_names(empty_database) == set(Base.metadata.tables) | {
        "alembic_version"
    }
    assert migrate.pending_revisions(empty_database) == set()


def test_upgrade_twice_is_harmless(empty_database):
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)

    assert migrate.pending_revisions(empty_database) == set()


def test_models_match_the_migrations(empty_database):
    migrate.upgrade(empty_database)

    with empty_database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": Base.metadata}
        )
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_engine_tables_come_from_the_foundation_revision(empty_database):
    migrate.upgrade(empty_database, "0001_foundation")

    engine_tables = {
        "security_domain",
        "user_account",
        "role_grant",
        "deployment",
        "deployment_file",
        "spec_blob",
        "process_definition",
        "decision_definition",
        "process_instance",
        "human_task",
        "task_candidate",
        "history_entry",
        "timer",
        "incident",
    }
    assert engine_tables <= table_names(empty_database)


def test_comparison_sees_a_schema_that_differs(empty_database):
    """The comparison above can fail: against no models every table is extra."""
    migrate.upgrade(empty_database)

    with empty_database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, MetaData())

    removed = {d[1].name for d in differences if d[0] == "remove_table"}
    assert removed == set(Base.metadata.tables)


def test_revisions_form_one_line_of_history(empty_database):
    """One head: the next ``alembic revision`` needs no merge."""
    script = ScriptDirectory.from_config(migrate.alembic_config(empty_database))

    assert len(script.get_heads()) == 1
    assert len(list(script.walk_revisions())) >= 6
    assert script.get_revision("0006_audit_events").down_revision == "0005_api_tokens"


def test_upgrade_keeps_the_rows_of_earlier_revisions(empty_database):
    migrate.upgrade(empty_database, "0001_foundation")
    with empty_database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO security_domain (id, name, parent_id, path) "
                "VALUES (1, 'acme', NULL, 'acme')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO spec_blob (sha256, content, created_at) "
                "VALUES (:sha, :content, CURRENT_TIMESTAMP)"
            ),
            {"sha": "a" * 64, "content": '{"spec": true}'},
        )

    migrate.upgrade(empty_database)

    with empty_database.engine.connect() as connection:
        domains = connection.execute(text("SELECT path FROM security_domain")).all()
        blobs = connection.execute(text("SELECT content FROM spec_blob")).all()
    assert domains == [("acme",)]
    assert blobs == [('{"spec": true}',)]
    assert migrate.pending_revisions(empty_database) == set()


def test_upgrade_from_api_tokens_adds_an_empty_audit_trail(empty_database):
    migrate.upgrade(empty_database, "0005_api_tokens")
    with empty_database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO security_domain (id, name, parent_id, path) "
                "VALUES (1, 'acme', NULL, 'acme')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO user_account (id, username, display_name, email, "
                "domain_id, password_hash, is_active, created_at) VALUES (1, 'jdoe', "
                "'Jane Doe', 'jdoe@acme.example', 1, NULL, TRUE, CURRENT_TIMESTAMP)"
            )
        )
    assert "audit_event" not in table_names(empty_database)

    migrate.upgrade(empty_database)

    with empty_database.engine.connect() as connection:
        users = connection.execute(text("SELECT username FROM user_account")).all()
        events = connection.execute(text("SELECT count(*) FROM audit_event")).all()
    assert users == [("jdoe",)]
    assert events == [(0,)]
    assert migrate.pending_revisions(empty_database) == set()
