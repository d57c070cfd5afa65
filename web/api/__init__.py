"""The REST API under /api/v1 and the Camunda REST subset under /engine-rest.

See :mod:`web.api.auth` for who may call, :mod:`web.api.errors` for the one
error shape, :mod:`web.api.openapi` for the document at /api/v1/openapi.json.
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from web.extensions import csrf

from . import camunda, errors, requests_api, v1  # noqa: F401 - routes
from .auth import is_api_path


class IdConverter(IntegerConverter):
    """A row number in a URL; larger than any database integer means not found."""

    def __init__(self, url_map):
        super().__init__(url_map, min=0, max=2**63 - 1)


def init_app(app: Flask) -> None:
    """Register the API blueprints, their authentication and error handlers."""
    app.url_map.converters["id"] = IdConverter
    # Token and Basic callers carry no cookie a browser adds by itself; session
    # callers are held to the CSRF rule in web.api.auth.authenticate instead.
    csrf.exempt(v1.bp)
    csrf.exempt(camunda.bp)
    app.register_blueprint(v1.bp)
    app.register_blueprint(camunda.bp)
    _route_errors_outside_blueprints(app)


def _route_errors_outside_blueprints(app: Flask) -> None:
    """Answer unknown API paths and wrong methods in the API's shape.

    Routing fails before any blueprint is chosen, so the blueprints' handlers
    never see these; the app's handlers for other paths stay as they were.
    """
    for status in (404, 405):
        previous = next(
            iter(app.error_handler_spec[None].get(status, {}).values()), None
        )

        def handler(err: HTTPException, previous=previous) -> Response:
            if request.path.startswith("/engine-rest"):
                return camunda.camunda_error(err)
            if is_api_path(request.path):
                return errors.handle(err)
            return previous(err) if previous is not None else err

        app.register_error_handler(status, handler)
