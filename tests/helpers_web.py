"""Fixtures and helpers shared by the web console tests.

Users are signed in by writing the flask-login session directly, so the
tests do not spend the sign-in rate limit; the sign-in form itself is tested
on its own. CSRF protection stays on: posting helpers read the token from
the page's ``csrf-token`` meta tag first.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sqlalchemy import select

from engine import deployments, migrate, product  # noqa: F401 - registers handlers
from engine.config import Settings
from engine.db import Database
from engine.identity import actor_for
from engine.models import User
from engine.provisioning import demo

ROOT = Path(__file__).resolve().parent.parent
BPMN_DIR = ROOT / "bpmn"
DATA = Path(__file__).resolve().parent / "data"
PASSWORD = demo.DEMO_PASSWORD

_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def web_settings(tmp_path: Path, database: Database) -> Settings:
    return Settings(
        database_url=database.url.render_as_string(hide_password=False),
        instance_path=tmp_path / "instance",
        secret_key="web-test-secret-key",
        token_encryption_key="web-test-token-encryption-key",
        base_url="http://127.0.0.1:5000",
    )


def prepare(database: Database, settings: Settings, *, demo_data: bool = True) -> None:
    """Deploy the product's diagrams and load the demo organisation."""
    with database.write() as session:
        deployments.deploy(
            session,
            deployments.read_paths([BPMN_DIR]),
            deployed_by="setup",
            source="tests",
        )
        if demo_data:
            demo.load_demo_data(session, settings)


def prepare_file_database(path: Path) -> tuple[Database, Settings]:
    """Create, migrate and fill a SQLite file database for a real server."""
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    settings = web_settings(path.parent, database)
    prepare(database, settings)
    return database, settings


def sign_in(client, database: Database, username: str) -> None:
    """Start a session for ``username`` as flask-login would."""
    with database.read() as session:
        user_id = session.scalar(select(User.id).where(User.username == username))
    assert user_id is not None, f"no user {username}"
    with client.session_transaction() as flask_session:
        flask_session.clear()
        flask_session["_user_id"] = str(user_id)
        flask_session["_fresh"] = True


def csrf_token(client, path: str = "/") -> str:
    """Return the CSRF token of the signed-in session, read from a page."""
    response = client.get(path)
    match = _META.search(response.get_data(as_text=True))
    assert match, f"no csrf-token meta tag on {path} ({response.status_code})"
    return match.group(1)


def post(client, path: str, data: dict | None = None, **kwargs):
    """Post a form with the session's CSRF token."""
    payload = dict(data or {})
    payload["csrf_token"] = csrf_token(client)
    return client.post(path, data=payload, **kwargs)


def actor(database: Database, username: str):
    with database.read() as session:
        return actor_for(session, username)


def open_task_id(database: Database, request_id: int) -> str:
    """Return the id of the one open task of provisioning request ``request_id``."""
    from engine.models import HumanTask
    from engine.provisioning.request_models import ProvisioningRequest

    with database.read() as session:
        instance_id = session.scalar(
            select(ProvisioningRequest.instance_id).where(
                ProvisioningRequest.id == request_id
            )
        )
        ids = session.scalars(
            select(HumanTask.id).where(
                HumanTask.instance_id == instance_id, HumanTask.status == "open"
            )
        ).all()
    assert len(ids) == 1, f"request {request_id} has open tasks {ids}"
    return ids[0]


_template: Path | None = None


def template_database(tmp_path_factory) -> Path:
    """Return a SQLite file with the product deployed and the demo data, made once.

    Preparing takes seconds (password hashing, deployment), so each test
    copies this file instead.
    """
    global _template
    if _template is None or not _template.exists():
        path = tmp_path_factory.mktemp("web_template") / "console.sqlite3"
        database, _ = prepare_file_database(path)
        database.dispose()
        _template = path
    return _template


def copy_database(template: Path, tmp_path: Path) -> tuple[Database, Settings]:
    """Copy the prepared database for one test and open it."""
    path = tmp_path / "console.sqlite3"
    shutil.copy(template, path)
    database = Database(f"sqlite:///{path}")
    return database, web_settings(tmp_path, database)


def make_app(database: Database, settings: Settings, **config):
    from web import create_app

    return create_app(
        {"SETTINGS": settings, "DATABASE": database, "TESTING": True, **config}
    )


def client_as(env, username: str | None = None):
    """Return a test client of ``env``'s app, signed in as ``username`` if given."""
    client = env.app.test_client()
    if username:
        sign_in(client, env.database, username)
    return client
