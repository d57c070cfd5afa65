"""Fixtures for the API tests: the web app over the provisioning organisation.

``make_api(database, settings)`` gives an :class:`Api` with the organisation
of :mod:`helpers_provisioning` (bpmn/ deployed, people of every role), a Flask
test client, and ``api.token("anna")`` for a bearer token of anyone. Test
modules wrap it in a fixture of their own.

``serve(database, tmp_path, *cli_options)`` runs ``provisioning serve`` with
gunicorn for the tests of what only a real server shows (its log lines,
metrics across worker processes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from helpers_provisioning import Org, make_org

from engine import api_tokens
from engine.config import Settings
from engine.db import Database
from web import create_app

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Api:
    org: Org
    app: Flask
    client: FlaskClient

    def token(self, username: str, roles: list[str] | None = None) -> str:
        """Create an API token for ``username`` and return its secret."""
        with self.org.database.write() as session:
            _, secret = api_tokens.create_token(
                session,
                username,
                name=f"tests of {username}",
                roles=roles,
                actor="system",
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


@dataclass
class Server:
    """A ``provisioning serve`` process on 127.0.0.1 and the file it logs to."""

    url: str
    log: Path
    process: subprocess.Popen

    def get(self, path: str) -> tuple[int, str]:
        """Call ``path`` on a new connection; return the status and the body."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@contextmanager
def serve(
    database: Database,
    tmp_path: Path,
    *options: str,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Run ``provisioning [options] serve`` over ``database`` until the block ends.

    The server runs in a session of its own, so that stopping it stops its
    gunicorn workers too.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / f"serve-{port}.log"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT", "LOG_LEVEL")
    }
    environment.update(
        DATABASE_URL=database.url.render_as_string(hide_password=False),
        INSTANCE_PATH=str(tmp_path / "instance"),
        SECRET_KEY="serve-test-secret",
        **(env or {}),
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *options, "serve"]
            + ["--host", "127.0.0.1", "--port", str(port)]
            + ["--workers", str(workers)],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"The server exited: {server.log.read_text()[-2000:]}")
        try:
            if server.get("/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"The server was not ready after {timeout} s.")
