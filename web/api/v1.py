"""The REST API under /api/v1: tasks, instances, incidents, definitions, tokens.

Every view goes through the same engine functions as the console and the CLI;
this module only reads the call, checks who may make it, and shapes the
answer. Provisioning requests, and completing tasks (whose request steps
have rules of their own), are in :mod:`web.api.requests_api`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from flask_wtf.csrf import generate_csrf
from sqlalchemy import or_, select
from werkzeug.exceptions import default_exceptions

from engine import api_tokens, deployments, instances
from engine.errors import ValidationFailed
from engine.identity import ADMINISTRATOR, Actor
from engine.models import (
    Deployment,
    HumanTask,
    Incident,
    IncidentStatus,
    InstanceStatus,
    ProcessDefinition,
    ProcessInstance,
    utcnow,
)

from . import serialize
from .auth import (
    actor,
    admin_scopes,
    api_user,
    authenticate,
    require_admin,
    require_global_admin,
)
from .errors import ApiError, bad_request, field_error, handle, parse_json
from .openapi import openapi_document

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1", template_folder="templates")

#: endpoints anyone may call, signed in or not
PUBLIC_ENDPOINTS = {"api_v1.openapi_json", "api_v1.reference"}
MAX_LIMIT = 200
#: far beyond any real list, yet within every database's integers
MAX_OFFSET = 1_000_000_000


@bp.before_request
def _authenticate() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        authenticate()


@bp.errorhandler(Exception)
def _error(err: Exception):
    return handle(err)


# Flask looks up handlers by status code before class, and the app's own
# handlers by code (the console's pages, its CSRF page) would otherwise answer
# this blueprint's HTTP errors in HTML or in another shape.
for _status in default_exceptions:
    bp.register_error_handler(_status, handle)


# -- reading the call -------------------------------------------------------


def database():
    return current_app.extensions["database"]


def settings():
    return current_app.extensions["settings"]


def json_body() -> dict[str, Any]:
    """Return the JSON object sent; 415 without the JSON type, 400 if malformed."""
    if not request.is_json:
        raise ApiError(
            415,
            "Send the body as JSON with 'Content-Type: application/json'.",
        )
    body = parse_json(request.get_data(cache=True))
    if not isinstance(body, dict):
        raise bad_request(
            'The body must be a JSON object, such as {"reason": "..."}, not '
            f"{_json_kind(body)}."
        )
    return body


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def optional_json_body() -> dict[str, Any]:
    """Return the JSON object sent, or {} when the call has no body."""
    if not request.get_data(cache=True):
        return {}
    return json_body()


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise field_error(name, "Give a text value.")
    if required and not value.strip():
        raise field_error(name, "This field is required.")
    return value


def capped_text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    """Return a free-text field, held to the cap of a task form's text fields.

    Reasons and comments are stored and mailed alike, so a reason sent here
    is checked by the same engine rule (and limit) as an approver's comment.
    """
    value = text_field(body, name, required=required)
    as_form = {"fields": [{"id": name, "label": f"The {name}", "type": "string"}]}
    try:
        instances.validate_form(as_form, {name: value})
    except ValidationFailed as err:
        raise field_error(
            name,
            f"{err.field_errors[name]} Shorten it (this one has {len(value)}).",
        ) from None
    return value


def object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name, {})
    if not isinstance(value, dict):
        raise field_error(name, "Give an object of field names and values.")
    return value


def query_int(name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"Query parameter '{name}' must be a whole number, not {raw!r}.",
            **{name: "Give a whole number."},
        ) from None
    if value < low or (high is not None and value > high):
        limits = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise bad_request(
            f"Query parameter '{name}' must be {limits}.",
            **{name: f"Give a number {limits}."},
        )
    return value


def query_bool(name: str) -> bool:
    raw = (request.args.get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise bad_request(
            f"Query parameter '{name}' must be true or false, not {raw!r}.",
            **{name: "Give true or false."},
        )
    return raw in ("true", "1")


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise bad_request(
            f"Query parameter '{name}' must be one of {', '.join(choices)}.",
            **{name: f"Give one of {', '.join(choices)}."},
        )
    return raw


def page() -> tuple[int, int]:
    return (
        query_int("limit", 50, low=1, high=MAX_LIMIT),
        query_int("offset", 0, high=MAX_OFFSET),
    )


def within_admin_scope(column):
    """A filter keeping rows whose domain lies under the caller's admin scopes."""
    return or_(
        *(
            or_(column == scope, column.startswith(scope + "/", autoescape=True))
            for scope in admin_scopes()
        )
    )


# -- the document and its page ----------------------------------------------


@bp.get("/openapi.json")
def openapi_json():
    """Return the OpenAPI 3 document of this API."""
    return jsonify(openapi_document(request.host_url.rstrip("/")))


@bp.get("/docs")
def reference():
    """Show the API reference, rendered from the OpenAPI document."""
    return render_template(
        "api/reference.html", document=openapi_document(request.host_url.rstrip("/"))
    )


@bp.get("/csrf-token")
def csrf_token():
    """Return the CSRF token a browser session sends in X-CSRFToken."""
    return jsonify({"csrf_token": generate_csrf()})


@bp.get("/me")
def me():
    """Describe the caller: name, domain, roles, and how they authenticated."""
    user = api_user()
    return jsonify(
        {
            "username": user.username,
            "display_name": user.display_name,
            "domain_path": user.domain_path,
            "roles": [
                {"role": role, "domain_path": scope} for role, scope in actor().grants
            ],
            "authenticated_by": user.via,
        }
    )


# -- personal API tokens ----------------------------------------------------


@bp.get("/api-tokens")
def list_api_tokens():
    """List the caller's API tokens (never their secrets)."""
    with database().read() as session:
        tokens = api_tokens.list_tokens(session, actor().username)
        return jsonify({"items": [t.as_dict() for t in tokens]})


@bp.post("/api-tokens")
def create_api_token():
    """Create a token for the caller; the secret is in this answer only."""
    body = json_body()
    name = text_field(body, "name")
    roles = body.get("roles")
    if roles is not None and (
        not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)
    ):
        raise field_error("roles", "Give a list of role names, or leave it out.")
    days = body.get("expires_in_days")
    if days is not None and (
        not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650
    ):
        raise field_error("expires_in_days", "Give a whole number of days, 1 to 3650.")
    if api_user().via == "token":
        raise ApiError(
            403,
            "An API token cannot create further tokens; sign in to the console "
            "to create one.",
        )

    with database().write() as session:
        token, secret = api_tokens.create_token(
            session,
            actor().username,
            name=name,
            roles=roles,
            expires_at=utcnow() + timedelta(days=days) if days else None,
            actor=actor().username,
        )
        answer = {**token.as_dict(), "token": secret}
    return jsonify(answer), 201


@bp.delete("/api-tokens/<id:token_id>")
def revoke_api_token(token_id: int):
    """Revoke a token of the caller (or, for administrators, of their users)."""
    with database().write() as session:
        token = api_tokens.revoke_token(session, actor(), token_id)
        return jsonify(token.as_dict())


# -- tasks ------------------------------------------------------------------


@bp.get("/tasks")
def list_tasks():
    """List the open tasks the caller may work: assigned and in their queues."""
    limit, offset = page()
    queue = request.args.get("queue") or None
    with database().read() as session:
        rows = instances.list_tasks(
            session,
            actor(),
            assigned_only=query_bool("assigned_only"),
            queue=queue,
            process_key=request.args.get("process_key") or None,
            limit=limit,
            offset=offset,
        )
        return jsonify({"items": [serialize.task(t) for t in rows]})


def may_see_task(who: Actor, task: HumanTask) -> bool:
    """Return whether ``task`` lies within the caller's reach.

    The same rule as the console's task page: administrators of the task's
    security domain, people named on it (assignee, candidate user, who
    completed it) and holders of one of its candidate groups in its domain.
    Whether they may work it now (separation of duties, someone else holds
    it) is a separate question, answered with 403 or 409.
    """
    if who.has_role(ADMINISTRATOR, task.domain_path):
        return True
    if who.username in (task.assignee, task.completed_by):
        return True
    if who.username in task.candidate_users:
        return True
    return any(who.has_role(group, task.domain_path) for group in task.candidate_groups)


def visible_task(session, task_id: str) -> HumanTask:
    """Return a task the caller may see; 404 for anyone else.

    Every task endpoint calls this first, so that nobody outside a task's
    reach learns whether it exists, who holds it or who completed it.
    """
    task = session.get(HumanTask, task_id)
    # One answer for unknown and out of reach, so neither can be told apart.
    if task is None or not may_see_task(actor(), task):
        raise ApiError(
            404,
            f"Task {task_id} does not exist or is not yours to see; check the id "
            "against GET /api/v1/tasks.",
        )
    return task


def _instance_label(task: HumanTask) -> str:
    return task.instance.business_key or f"instance {task.instance_id}"


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    """Show one task with its form."""
    with database().read() as session:
        return jsonify(serialize.task(visible_task(session, task_id)))


@bp.post("/tasks/<task_id>/claim")
def claim_task(task_id: str):
    """Assign a task of one of the caller's queues to the caller."""
    who = actor()
    with database().write() as session:
        visible_task(session, task_id)
        task, _ = instances.lock_task(session, task_id)
        if task.assignee and task.assignee != who.username:
            raise ApiError(
                409,
                f"Task '{task.name}' of {_instance_label(task)} is already claimed "
                f"by {task.assignee}; ask them to unclaim it, or an administrator "
                "to assign it to you.",
                code="task_claimed",
            )
        task = instances.claim_task(session, task_id, actor=who)
        return jsonify(serialize.task(task))


@bp.post("/tasks/<task_id>/unclaim")
def unclaim_task(task_id: str):
    """Put a task the caller holds back in its queue."""
    with database().write() as session:
        visible_task(session, task_id)
        task, _ = instances.lock_task(session, task_id)
        if task.assignee is None:
            raise ApiError(
                409,
                f"Task '{task.name}' of {_instance_label(task)} is not claimed by "
                "anyone, so there is nothing to put back in the queue.",
                code="task_not_claimed",
            )
        task = instances.unclaim_task(session, task_id, actor=actor())
        return jsonify(serialize.task(task))


# -- definitions and deployments --------------------------------------------


@bp.get("/process-definitions")
def list_definitions():
    """List the latest version of every deployed process."""
    require_admin()
    with database().read() as session:
        latest: dict[str, ProcessDefinition] = {}
        for row in deployments.list_definitions(session):
            latest[row.key] = row
        return jsonify({"items": [serialize.definition(d) for d in latest.values()]})


@bp.get("/process-definitions/<key>/versions")
def definition_versions(key: str):
    """List every version of one process, oldest first."""
    require_admin()
    with database().read() as session:
        rows = list(
            session.scalars(
                select(ProcessDefinition)
                .where(ProcessDefinition.key == key)
                .order_by(ProcessDefinition.version)
            )
        )
        if not rows:
            deployments.latest_definition(session, key)  # raises NotFound, says why
        return jsonify({"items": [serialize.definition(d) for d in rows]})


@bp.get("/deployments")
def list_deployments():
    """List deployments, newest first."""
    require_admin()
    limit, offset = page()
    with database().read() as session:
        rows = session.scalars(
            select(Deployment)
            .order_by(Deployment.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return jsonify({"items": [serialize.deployment(d) for d in rows]})


@bp.post("/deployments")
def create_deployment():
    """Deploy .bpmn and .dmn files sent as multipart parts (any part names)."""
    who = require_global_admin("Deploying")
    files = [
        (upload.filename or name, upload.read())
        for name, upload in request.files.items(multi=True)
    ]
    if not files:
        raise bad_request(
            "Send the .bpmn and .dmn files as multipart/form-data file parts.",
            files="No file part was sent.",
        )
    with database().write() as session:
        result = deployments.deploy(
            session,
            files,
            deployed_by=who.username,
            source=f"api from {request.remote_addr or 'unknown'}",
            name=request.form.get("name") or None,
            max_bytes=settings().max_upload_bytes,
        )
    return jsonify(serialize.deployment_result(result)), 201 if result.changed else 200


# -- instances and incidents (administrators) -------------------------------


def _admin_instance(session, instance_id: int) -> ProcessInstance:
    require_admin()
    row = session.get(ProcessInstance, instance_id)
    if row is None or not actor().has_role(ADMINISTRATOR, row.domain_path):
        raise ApiError(
            404,
            f"Process instance {instance_id} does not exist in the security "
            "domains you administer.",
        )
    return row


@bp.get("/instances")
def list_instances():
    """List process instances in the caller's administered domains, newest first."""
    require_admin()
    limit, offset = page()
    status = query_choice(
        "status",
        (
            InstanceStatus.RUNNING,
            InstanceStatus.COMPLETED,
            InstanceStatus.CANCELLED,
            InstanceStatus.INCIDENT,
        ),
    )
    query = select(ProcessInstance).where(
        within_admin_scope(ProcessInstance.domain_path)
    )
    if status:
        query = query.where(ProcessInstance.status == status)
    if request.args.get("process_key"):
        query = query.where(ProcessInstance.process_key == request.args["process_key"])
    query = query.order_by(ProcessInstance.id.desc()).limit(limit).offset(offset)
    with database().read() as session:
        return jsonify(
            {"items": [serialize.instance(i) for i in session.scalars(query)]}
        )


@bp.get("/instances/<id:instance_id>")
def get_instance(instance_id: int):
    """Show a process instance with its tasks, history, incidents and data."""
    with database().read() as session:
        _admin_instance(session, instance_id)
        view = instances.describe_instance(session, instance_id)
        return jsonify(serialize.instance_view(view))


@bp.post("/instances/<id:instance_id>/cancel")
def cancel_instance(instance_id: int):
    """Cancel a running process instance, with a reason."""
    body = json_body()
    reason = capped_text_field(body, "reason")
    with database().write() as session:
        _admin_instance(session, instance_id)
        row = instances.cancel_instance(
            session, instance_id, actor=actor(), reason=reason
        )
        return jsonify(serialize.instance(row))


@bp.post("/instances/<id:instance_id>/retry")
def retry_instance(instance_id: int):
    """Run the failed step of an instance in incident again."""
    with database().write() as session:
        _admin_instance(session, instance_id)
        row = instances.retry_incident(
            session, instance_id, actor=actor(), settings=settings()
        )
        return jsonify(serialize.instance(row))


@bp.get("/incidents")
def list_incidents():
    """List incidents in the caller's administered domains, newest first."""
    require_admin()
    limit, offset = page()
    status = query_choice("status", (IncidentStatus.OPEN, IncidentStatus.RESOLVED))
    query = (
        select(Incident)
        .join(ProcessInstance, ProcessInstance.id == Incident.instance_id)
        .where(within_admin_scope(ProcessInstance.domain_path))
    )
    if status:
        query = query.where(Incident.status == status)
    query = query.order_by(Incident.id.desc()).limit(limit).offset(offset)
    with database().read() as session:
        return jsonify(
            {"items": [serialize.incident(i) for i in session.scalars(query)]}
        )
