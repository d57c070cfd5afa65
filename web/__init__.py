"""The web console: self-service, task inbox, administration, and the APIs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from engine import product  # noqa: F401 - registers service handlers and listeners
from engine.config import Settings, instance_secret
from engine.db import Database

from .extensions import csrf, limiter, login_manager


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the web application.

    :param config: overrides of Flask settings; ``SETTINGS`` may carry an
        :class:`engine.config.Settings` and ``DATABASE`` a
        :class:`engine.db.Database` (tests pass their own).
    """
    config = config or {}
    settings: Settings = config.get("SETTINGS") or Settings.from_env()
    app = Flask(__name__, instance_path=str(Path(settings.instance_path).resolve()))
    app.config.update(
        SECRET_KEY=settings.secret_key or instance_secret(settings.instance_path),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_STORAGE_URI=os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.config.update(config)
    app.extensions["settings"] = settings
    app.extensions["database"] = config.get("DATABASE") or Database.from_settings(
        settings
    )

    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)

    from . import api, auth, mail_admin, ops, views  # noqa: F401 - auth: user loader

    views.init_app(app)
    mail_admin.init_app(app)
    api.init_app(app)
    ops.init_app(app)
    return app
