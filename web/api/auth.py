"""Who calls the API: a browser session, a personal API token, or HTTP Basic.

* ``Authorization: Bearer <token>`` works on ``/api/v1`` and ``/engine-rest``.
  Such calls carry no cookie a browser would add by itself, so they are
  exempt from CSRF protection.
* ``Authorization: Basic`` (user name and password) works on ``/engine-rest``
  only, because that is what Camunda Modeler offers besides a token.
* Otherwise the signed-in session of the web console is used; a call with a
  session that changes data must send the session's CSRF token in the
  ``X-CSRFToken`` header, as the console's own pages do.

When an ``Authorization`` header is present it decides alone: a bad token is
refused even if a session cookie came along, so that a script never acts as
whoever happens to be signed in in the same browser.
"""

from __future__ import annotations

import logging

from flask import Request, current_app, g, request
from flask_login import current_user

from engine import api_tokens
from engine.identity import ADMINISTRATOR, Actor
from engine.provisioning import directory
from web.auth import LoginUser
from web.extensions import csrf, login_manager

from .errors import ApiError

logger = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/engine-rest/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_REALM = 'Bearer realm="api"'
BASIC_REALM = 'Basic realm="engine-rest"'


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/api", "/engine-rest")


@login_manager.request_loader
def load_user_from_request(req: Request) -> LoginUser | None:
    """Let flask-login's ``current_user`` see token and Basic callers of the API."""
    if not is_api_path(req.path) or not req.headers.get("Authorization"):
        return None
    return header_user()


def header_user() -> LoginUser | None:
    """Return the user the Authorization header names, or None if it is bad.

    The result is kept for the rest of the request; ``g.api_auth_problem``
    says why a header was refused.
    """
    if "api_header_user" in g:
        return g.api_header_user
    g.api_header_user = _resolve_header()
    return g.api_header_user


def _resolve_header() -> LoginUser | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    scheme = scheme.lower()
    database = current_app.extensions["database"]

    if scheme == "bearer":
        with database.read() as session:
            identity = api_tokens.resolve_token(session, credentials.strip())
            if identity is None:
                g.api_auth_problem = (
                    "The API token is unknown, revoked or expired; create a new "
                    "one and send it as 'Authorization: Bearer <token>'."
                )
                return None
            user = LoginUser(identity.user, via="token")
            stale = identity.stale
        user.actor = identity.actor
        if stale:
            # Recorded apart from the caller's own transaction, and only once
            # a minute, so that busy scripts do not queue on one row.
            with database.write() as session:
                api_tokens.record_use(session, identity.token_id)
        return user

    if scheme == "basic" and request.path.startswith("/engine-rest"):
        auth = request.authorization
        if auth is None or not auth.username:
            g.api_auth_problem = "The Basic credentials could not be read."
            return None
        with database.read() as session:
            found = directory.authenticate(session, auth.username, auth.password or "")
            if found is None:
                g.api_auth_problem = "The user name or password is wrong."
                return None
            return LoginUser(found, via="basic")

    g.api_auth_problem = "Send 'Authorization: Bearer <API token>'" + (
        " or HTTP Basic credentials."
        if request.path.startswith("/engine-rest")
        else "; HTTP Basic works only under /engine-rest."
    )
    return None


def authenticate() -> LoginUser:
    """Return the caller, or raise 401 with the reason.

    Called before every API view; enforces the CSRF rule for sessions.
    """
    if request.headers.get("Authorization"):
        user = header_user()
        if user is None:
            raise ApiError(
                401,
                g.get("api_auth_problem", "The credentials were refused."),
                code="unauthorized",
                headers=_challenge(refused=True),
            )
        g.api_user = user
        return user

    if current_user.is_authenticated and current_user.via == "session":
        if request.method not in SAFE_METHODS:
            csrf.protect()
        g.api_user = current_user._get_current_object()
        return g.api_user

    if request.path.startswith("/engine-rest"):
        message = "Send HTTP Basic credentials or 'Authorization: Bearer <API token>'."
    else:
        message = "Sign in to the console, or send 'Authorization: Bearer <API token>'."
    raise ApiError(401, message, code="unauthorized", headers=_challenge())


def _challenge(*, refused: bool = False) -> dict[str, str]:
    """Return the WWW-Authenticate header a 401 must carry (RFC 9110, 6750)."""
    if request.path.startswith("/engine-rest"):
        return {"WWW-Authenticate": BASIC_REALM}
    if refused and request.headers.get("Authorization", "").lower().startswith(
        "bearer"
    ):
        return {"WWW-Authenticate": f'{BEARER_REALM}, error="invalid_token"'}
    return {"WWW-Authenticate": BEARER_REALM}


def api_user() -> LoginUser:
    return g.api_user


def actor() -> Actor:
    """Return the engine actor of the caller (narrowed to a token's roles)."""
    return g.api_user.actor


def require_admin() -> Actor:
    """Return the actor if they are an administrator anywhere, else raise 403."""
    who = actor()
    if not who.is_admin:
        raise ApiError(
            403,
            "This needs the administrator role"
            + (
                " (your API token does not carry it)."
                if g.api_user.via == "token"
                else "."
            ),
        )
    return who


def require_global_admin(action: str) -> Actor:
    """Return the actor if they administer a top-level security domain.

    Process models are shared by every security domain, so changing them is
    reserved to administrators of a whole tree, not of one branch.
    """
    who = require_admin()
    if not any("/" not in scope for scope in who.scopes(ADMINISTRATOR)):
        raise ApiError(
            403,
            f"{action} changes process models for every security domain; it "
            "needs the administrator role in a top-level domain, and yours is "
            f"limited to {', '.join(who.scopes(ADMINISTRATOR))}.",
        )
    return who


def admin_scopes() -> list[str]:
    return actor().scopes(ADMINISTRATOR)
