"""The console's pages: blueprints, error pages, template helpers, headers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Flask, jsonify, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from engine.errors import (
    ConflictError,
    DeploymentError,
    NotFound,
    PermissionDenied,
    ProvisioningError,
    ValidationFailed,
)
from engine.identity import (
    ADMINISTRATOR,
    REQUEST_APPROVER,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
)

from .console.base import close_reading
from .extensions import login_manager

logger = logging.getLogger(__name__)

#: what each HTTP error means to the person who sees it, and what to do next
ERROR_TEXTS = {
    400: (
        "The request could not be understood",
        "Go back, check what you entered and try again.",
    ),
    403: (
        "You may not do this",
        "If you think you should, ask an administrator "
        "of your security domain to grant you the role.",
    ),
    404: (
        "Not found",
        "The page, request or task does not exist or is outside "
        "your security domains. Check the address or go back to the start page.",
    ),
    405: (
        "This action is not available here",
        "Use the buttons on the page instead of typing the address.",
    ),
    409: (
        "Someone else changed this first",
        "Nothing was changed by your action. Reload the page to see the current state.",
    ),
    413: (
        "The upload is too large",
        "Upload a smaller file; the limit is set "
        "by the administrator (MAX_UPLOAD_BYTES).",
    ),
    422: (
        "Some values need correcting",
        "Correct the fields named below and submit again.",
    ),
    429: ("Too many attempts", "Wait a minute, then try again."),
    500: (
        "Something went wrong on our side",
        "Nothing was saved by the action "
        "that failed. Try again in a moment; if it keeps happening, tell your "
        "administrator the time it happened.",
    ),
}

STATUS_OF = (
    (NotFound, 404),
    (PermissionDenied, 403),
    (ConflictError, 409),
    (ValidationFailed, 422),
    (DeploymentError, 422),
)


def init_app(app: Flask) -> None:
    """Register the console's blueprints, error pages and template helpers."""
    from .console import (
        admin_bp,
        admin_deployments,  # noqa: F401 - these modules add their pages to admin_bp
        admin_directory,  # noqa: F401
        admin_instances,  # noqa: F401
        admin_inventory,  # noqa: F401
        admin_reports,  # noqa: F401
        auth_pages,
        inbox,
        selfservice,
    )

    login_manager.login_view = "auth_pages.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"

    for blueprint in (
        auth_pages.bp,
        selfservice.bp,
        inbox.bp,
        admin_bp.bp,
    ):
        app.register_blueprint(blueprint)

    app.register_error_handler(ProvisioningError, _engine_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    # 404 and 405 by code as well: routing fails before any blueprint is
    # chosen, and the API chains its own 404 and 405 handlers to these. Other
    # codes stay class-based so that the API blueprint's handlers come first.
    for status in (404, 405):
        app.register_error_handler(status, _http_error)
    app.register_error_handler(500, _unexpected_error)
    app.after_request(_security_headers)
    app.teardown_request(close_reading)
    app.context_processor(_template_globals)
    app.add_template_filter(format_time, "when")
    app.add_template_filter(format_age, "age")
    app.add_template_filter(format_waited, "waited")
    app.add_template_filter(humanize, "human")
    app.add_template_filter(local_path, "local_path")


def status_for(err: ProvisioningError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(err, kind):
            return status
    return 400


def error_page(status: int, message: str, *, advice: str | None = None, **extra):
    """Render the error page for ``status`` with the specific ``message``.

    ``advice`` replaces the status's general advice when the message alone
    does not say what to do next, or "" when it already does.
    """
    title, general_advice = ERROR_TEXTS.get(status, ERROR_TEXTS[400])
    advice = general_advice if advice is None else advice
    if request.path.startswith("/api/"):
        body = {"error": {"status": status, "title": title, "message": message}}
        return jsonify(body), status
    try:
        body = render_template(
            "errors/error.html",
            status=status,
            title=title,
            message=message,
            advice=advice,
            **extra,
        )
    except Exception:  # noqa: BLE001 - the error page itself must not fail
        logger.exception("The error page could not be drawn")
        body = (
            f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
            f"<p>{escape(message)}</p><p>{escape(advice)}</p><p><a href='/'>Start"
            " page</a></p>"
        )
    return body, status


def _engine_error(err: ProvisioningError):
    status = status_for(err)
    field_errors = getattr(err, "field_errors", {})
    problems = getattr(err, "problems", [])
    message = str(err).splitlines()[0] if problems else str(err)
    return error_page(status, message, field_errors=field_errors, problems=problems)


def _csrf_error(err: CSRFError):
    return error_page(
        400,
        "The form was sent without a valid security token (it may have expired, "
        "or come from another site). Reload the page and submit the form again.",
    )


def _http_error(err: HTTPException):
    status = err.code or 500
    default = ERROR_TEXTS.get(status, (err.name, ""))[0]
    description = err.description or default
    if description == type(err).description:
        description = default
    if description == default:
        # The title says the same; say instead what was asked for.
        description = {
            404: f"There is no page at {request.path}.",
            405: f"{request.path} does not take a {request.method} request.",
        }.get(status, description)
    if status == 429:
        description = (
            "Too many attempts from you in a short time "
            f"({err.description}). Wait a minute before trying again."
        )
    if status == 413:
        description = "The file you sent is larger than the upload limit."
    if status not in ERROR_TEXTS:
        return error_page(400, description)
    return error_page(status, description)


def _unexpected_error(err: HTTPException):
    # Flask has already logged the original exception with its traceback.
    return error_page(500, "An unexpected error stopped this page.")


def _security_headers(response):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        # Scripts only from our own files: page data travels in JSON blocks.
        # bpmn-js and htmx set inline styles, hence 'unsafe-inline' for style.
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
    if current_user and getattr(current_user, "is_authenticated", False):
        headers.setdefault("Cache-Control", "no-store")
    return response


def _template_globals() -> dict:
    def has_role(role: str) -> bool:
        return bool(
            getattr(current_user, "is_authenticated", False)
            and current_user.actor.has_role(role)
        )

    return {
        "has_role": has_role,
        "ROLE_APPROVER": REQUEST_APPROVER,
        "ROLE_DISTRIBUTOR": TOKEN_DISTRIBUTOR,
        "ROLE_TOKEN_ADMIN": TOKEN_ADMINISTRATOR,
        "ROLE_ADMIN": ADMINISTRATOR,
        "now": datetime.now(UTC),
    }


def format_time(value: datetime | None) -> str:
    """Show a timestamp as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_age(value: datetime | None) -> str:
    """Show how long ago ``value`` was: '5 min', '3 h', '2 days'."""
    if value is None:
        return "—"
    seconds = (datetime.now(UTC) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = "under a minute"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h"
    else:
        days = int(seconds // 86400)
        text = f"{days} day" + ("s" if days != 1 else "")
    return f"in {text}" if future else f"{text} ago"


def format_waited(value: datetime | None) -> str:
    """Show how long something has waited since ``value``: '5 min', '2 days'."""
    age = format_age(value)
    return age.removesuffix(" ago") if age.endswith(" ago") else age


def humanize(value: str | None) -> str:
    """Turn an identifier such as 'task_completed' into 'Task completed'."""
    if not value:
        return ""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


def local_path(url: str) -> str:
    """Return the path of a link to this console, so it works on any host name.

    Links in stored data carry BASE_URL, which is right for e-mail but may
    differ from the address the browser used.
    """
    parts = urlsplit(url or "")
    return parts.path + (f"?{parts.query}" if parts.query else "")
