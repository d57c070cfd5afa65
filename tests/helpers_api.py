"""Fixtures for the API tests: the web app over the provisioning organisation.

``make_api(database, settings)`` gives an :class:`Api` with the organisation
of :mod:`helpers_provisioning` (bpmn/ deployed, people of every role), a Flask
test client, and ``api.token("anna")`` for a bearer token of anyone. Test
modules wrap it in a fixture of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from helpers_provisioning import Org, make_org

from engine import api_tokens
from engine.config import Settings
from engine.db import Database
from web import create_app


@dataclass
class Api:
    org: Org
    app: Flask
    client: FlaskClient

    def token(self, username: str, roles: list[str] | None = None) -> str:
        """Create an API token for ``username`` and return its secret."""
        with self.org.database.write() as session:
            _, secret = api_tokens.create_token(
                session, username, name=f"tests of {username}", roles=roles
            )
        return secret

    def headers(self, username: str, roles: list[str] | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(username, roles)}"}

    def call(
        self,
        method: str,
        path: str,
        username: str | None = None,
        json: Any = None,
        **kwargs: Any,
    ):
        """Call the API as ``username`` (with a fresh token), or anonymously."""
        headers = kwargs.pop("headers", {})
        if username is not None:
            headers.update(self.headers(username))
        return self.client.open(
            path, method=method, json=json, headers=headers, **kwargs
        )


def make_app(database: Database, settings: Settings) -> Flask:
    return create_app(
        {
            "SETTINGS": settings,
            "DATABASE": database,
            "TESTING": True,
            "RATELIMIT_ENABLED": False,
        }
    )


def make_api(database: Database, settings: Settings, *, passwords=False) -> Api:
    org = make_org(database, settings, passwords=passwords)
    app = make_app(database, settings)
    return Api(org, app, app.test_client())


def error_of(response) -> dict[str, Any]:
    """Return the API error of a response, checking its shape on the way."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]
