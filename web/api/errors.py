"""One error shape for every answer of the API, and no stack trace ever.

Every error under ``/api/v1`` is a JSON object::

    {"error": {"code": "validation_failed", "message": "...", "fields": {...}}}

``code`` is short and stable for programs, ``message`` is a sentence for
people (what was wrong, where, what to do), ``fields`` maps a submitted field
to what is wrong with it (empty when no single field is to blame). Status
codes keep their names' meaning: 400 a malformed call, 401 no or bad
credentials, 403 not allowed, 404 unknown or not visible, 409 the state
changed under the caller, 422 well-formed data that fails validation.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import Response, jsonify
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from engine.errors import (
    ConfigurationError,
    ConflictError,
    DeploymentError,
    NotFound,
    PermissionDenied,
    ProvisioningError,
    ValidationFailed,
)

logger = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API answers with; raise it from a view."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code or HTTP_CODES.get(status, "error")
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return the API's error shape with ``status``."""
    response = jsonify(
        {"error": {"code": code, "message": message, "fields": fields or {}}}
    )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def status_of(err: ProvisioningError) -> int:
    """Return the HTTP status an engine error stands for."""
    if isinstance(err, ValidationFailed | DeploymentError):
        return 422
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, PermissionDenied):
        return 403
    if isinstance(err, ConflictError):
        return 409
    if isinstance(err, ConfigurationError):
        return 500
    return 400


def fields_of(err: ProvisioningError) -> dict[str, str]:
    """Return the per-field errors of an engine error (files for deployments)."""
    if isinstance(err, ValidationFailed):
        return dict(err.field_errors)
    if isinstance(err, DeploymentError):
        fields: dict[str, str] = {}
        for problem in err.problems:
            text = (
                str(problem)
                .removeprefix(problem.file + ": ")
                .removeprefix(problem.file + ", ")
            )
            fields[problem.file] = (
                f"{fields[problem.file]}; {text}" if problem.file in fields else text
            )
        return fields
    return {}


def unexpected(err: Exception) -> tuple[str, str]:
    """Log an unexpected error with a reference and return (reference, message)."""
    reference = uuid.uuid4().hex[:12]
    logger.error(
        "Unexpected error %s", reference, exc_info=err, extra={"error_id": reference}
    )
    return reference, (
        f"The server failed to handle this call (error reference {reference}); "
        "nothing was changed. Try again later, or give the reference to an "
        "administrator."
    )


def handle(err: Exception) -> Response:
    """Turn any exception raised under /api/v1 into the error shape."""
    if isinstance(err, ApiError):
        return error_response(
            err.status, err.code, err.message, err.fields, headers=err.headers
        )
    if isinstance(err, ProvisioningError):
        status = status_of(err)
        if status >= 500:
            logger.error("Configuration error: %s", err)
        return error_response(status, err.code, str(err), fields_of(err))
    if isinstance(err, CSRFError):
        return error_response(
            403,
            "csrf_failed",
            "A call that changes data with a browser session needs the session's "
            "CSRF token in the X-CSRFToken header (GET /api/v1/csrf-token gives "
            "it); scripts should use an API token instead.",
        )
    if isinstance(err, HTTPException):
        status = err.code or 500
        return error_response(
            status,
            HTTP_CODES.get(status, "error"),
            err.description or err.name,
            headers=protocol_headers(err),
        )
    if isinstance(err, OperationalError):
        logger.warning("Database unavailable: %s", err.orig)
        return error_response(
            503,
            "unavailable",
            "The database is not reachable just now; nothing was changed. "
            "Try again in a moment.",
        )
    _, message = unexpected(err)
    return error_response(500, "internal_error", message)


#: headers an HTTP error must keep when it is answered in our shape: the
#: challenge of a 401 and the methods a 405 allows
PROTOCOL_HEADERS = ("WWW-Authenticate", "Allow")


def protocol_headers(err: HTTPException) -> dict[str, str]:
    """Return the headers of ``err``'s own answer that the protocol requires."""
    response = err.get_response()
    return {
        name: response.headers[name]
        for name in PROTOCOL_HEADERS
        if response.headers.get(name)
    }


def parse_json(data: bytes) -> Any:
    """Return the JSON value of a request body, or raise 400 saying where it breaks."""
    if not data.strip():
        raise ApiError(
            400,
            'The body is empty; send a JSON object, such as {"reason": "..."}.',
            code="invalid_json",
        )
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "The body is not valid JSON: it is not UTF-8 text. Send the body "
            "encoded as UTF-8.",
            code="invalid_json",
        ) from None
    except json.JSONDecodeError as err:
        raise ApiError(
            400,
            f"The body is not valid JSON: {err.msg} at line {err.lineno}, column "
            f"{err.colno} (character {err.pos}). Check the quoting and commas "
            "there.",
            code="invalid_json",
        ) from None


def field_error(field: str, message: str) -> ApiError:
    """Return a 422 error about one submitted field."""
    return ApiError(
        422, f"{field}: {message}", code="validation_failed", fields={field: message}
    )


def bad_request(message: str, **fields: Any) -> ApiError:
    return ApiError(400, message, fields={k: str(v) for k, v in fields.items()})
