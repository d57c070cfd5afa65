"""A subset of the Camunda 7 REST API, enough for Camunda Modeler's buttons.

Process designers keep the modeler they know: its "Deploy" button sends the
diagram to ``POST /engine-rest/deployment/create`` and its "Start instance"
button posts to ``/engine-rest/process-definition/{id}/start``; before
either, it checks the connection with ``GET /engine-rest/deployment?maxResults=0``
and reads ``GET /engine-rest/version``. Answers and errors take Camunda's
shapes, because that is what the modeler reads: a refused diagram answers
with a ``ParseException`` whose message starts with Camunda's parse-error
code, so that the modeler shows our explanation of what is wrong.

Differences from Camunda, on purpose:

* Definition ids are ``key:version:number``, as Camunda's look; deployment ids
  are our deployment numbers as strings.
* Deploying unchanged files creates nothing (our deployments always filter
  duplicates); the answer then names the existing deployment and lists the
  current definitions of the files' processes, so "Start instance" still
  works.
* Only the latest version of a process can be started; starting by an id of
  an older version is refused with the latest version's id.
* Deploying and starting need the administrator role in a top-level security
  domain: a process started here bypasses the request forms of the console.
  Listing and reading deployments needs the administrator role, as
  ``GET /api/v1/deployments`` does; the connection check
  (``maxResults=0``) only needs valid credentials. A process instance can be
  read by administrators of its security domain.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, default_exceptions

from engine import deployments, instances
from engine.errors import DeploymentError, NotFound, ProvisioningError
from engine.identity import ADMINISTRATOR, Actor
from engine.models import (
    DecisionDefinition,
    Deployment,
    InstanceStatus,
    ProcessDefinition,
    ProcessInstance,
)

from . import errors
from .auth import BASIC_REALM, authenticate, require_admin, require_global_admin
from .errors import ApiError

logger = logging.getLogger(__name__)

bp = Blueprint("engine_rest", __name__, url_prefix="/engine-rest")

#: the Camunda version we answer to, recent enough for every modeler feature
#: of the deploy and start dialogs
CAMUNDA_VERSION = "7.21.0"
#: the prefix Camunda Modeler looks for to show a message as a diagram error
PARSE_ERROR_PREFIX = "ENGINE-09005 Could not parse BPMN process."
SOURCE = "Camunda Modeler"


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "engine_rest.version":
        return
    authenticate()


@bp.errorhandler(Exception)
def _error(err: Exception) -> Response:
    return camunda_error(err)


def camunda_error(err: Exception) -> Response:
    """Answer an error in Camunda's shape: {"type", "message", "code"}."""
    if isinstance(err, DeploymentError):
        return _parse_exception(err)
    headers: dict[str, str] = {}
    if isinstance(err, ApiError):
        status, kind, message = err.status, _kind(err.status), err.message
    elif isinstance(err, ProvisioningError):
        status = errors.status_of(err)
        kind, message = _kind(status), str(err)
    elif isinstance(err, HTTPException):
        status = err.code or 500
        kind, message = _kind(status), err.description or err.name
        headers = errors.protocol_headers(err)
    else:
        status = 500
        kind = "ProcessEngineException"
        _, message = errors.unexpected(err)

    response = jsonify({"type": kind, "message": message, "code": 0})
    response.status_code = status
    response.headers.update(headers)
    if status == 401:
        response.headers["WWW-Authenticate"] = BASIC_REALM
    return response


# By code too: Flask prefers the app's handlers for a code over a blueprint's
# handler for a class (see web.api.v1).
for _status in default_exceptions:
    bp.register_error_handler(_status, camunda_error)


def _kind(status: int) -> str:
    return {
        401: "AuthenticationException",
        403: "AuthorizationException",
        404: "RestException",
    }.get(status, "InvalidRequestException" if status < 500 else "RestException")


def _parse_exception(err: DeploymentError) -> Response:
    details: dict[str, dict[str, list]] = {}
    for problem in err.problems:
        element_ids = [problem.element_id] if problem.element_id else []
        details.setdefault(problem.file, {"errors": [], "warnings": []})[
            "errors"
        ].append(
            {
                "message": problem.message,
                "line": problem.line or 0,
                "column": 0,
                "mainElementId": problem.element_id,
                "elementIds": element_ids,
            }
        )
    summary = "; ".join(str(p) for p in err.problems)
    response = jsonify(
        {
            "type": "ParseException",
            "message": f"{PARSE_ERROR_PREFIX} Errors: {summary}",
            "code": 0,
            "details": details,
        }
    )
    response.status_code = 400
    return response


def database():
    return current_app.extensions["database"]


def camunda_time(value: datetime) -> str:
    """Format a time as Camunda does: 2024-01-23T13:59:43.000+0000."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{value.microsecond // 1000:03d}" + value.strftime("%z")
    )


def definition_id(row: ProcessDefinition | DecisionDefinition) -> str:
    return f"{row.key}:{row.version}:{row.id}"


def _definition(row: ProcessDefinition) -> dict[str, Any]:
    return {
        "id": definition_id(row),
        "key": row.key,
        "category": "http://bpmn.io/schema/bpmn",
        "description": None,
        "name": row.name,
        "version": row.version,
        "resource": row.file.filename,
        "deploymentId": str(row.deployment_id),
        "diagram": None,
        "suspended": False,
        "tenantId": None,
        "versionTag": None,
        "historyTimeToLive": None,
        "startableInTasklist": True,
    }


def _decision(row: DecisionDefinition) -> dict[str, Any]:
    return {
        "id": definition_id(row),
        "key": row.key,
        "category": "http://camunda.org/schema/1.0/dmn",
        "name": row.name,
        "version": row.version,
        "resource": row.file.filename,
        "deploymentId": str(row.deployment_id),
        "decisionRequirementsDefinitionId": None,
        "decisionRequirementsDefinitionKey": None,
        "tenantId": None,
        "versionTag": None,
        "historyTimeToLive": None,
    }


def _self_link(path: str) -> list[dict[str, str]]:
    return [{"method": "GET", "href": f"{request.host_url}{path}", "rel": "self"}]


def _deployment(row: Deployment) -> dict[str, Any]:
    return {
        "links": _self_link(f"engine-rest/deployment/{row.id}"),
        "id": str(row.id),
        "name": row.name,
        "source": row.source,
        "deploymentTime": camunda_time(row.deployed_at),
        "tenantId": None,
    }


@bp.get("/version")
def version():
    """Answer the Camunda version the modeler should assume."""
    return jsonify({"version": CAMUNDA_VERSION})


@bp.get("/deployment")
def list_deployments():
    """List deployments (the modeler calls it with maxResults=0 to test access)."""
    first = _int_arg("firstResult", 0)
    count = _int_arg("maxResults", 100)
    if count == 0:
        # Camunda Modeler's connection check: valid credentials are enough.
        return jsonify([])
    require_admin()
    with database().read() as session:
        rows = session.scalars(
            select(Deployment).order_by(Deployment.id).offset(first).limit(count)
        )
        return jsonify([_deployment(row) for row in rows])


@bp.get("/deployment/<deployment_id>")
def get_deployment(deployment_id: str):
    """Show one deployment (the ``self`` link of deployment/create's answer)."""
    require_admin()
    with database().read() as session:
        number = _row_number(deployment_id)
        row = session.get(Deployment, number) if number is not None else None
        if row is None:
            raise ApiError(404, f"Deployment with id '{deployment_id}' does not exist")
        return jsonify(_deployment(row))


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit():
        raise ApiError(400, f"Cannot set query parameter '{name}' to value '{raw}'.")
    return min(int(raw), 1000)


@bp.post("/deployment/create")
def create_deployment():
    """Deploy the files of a multipart request, as Camunda Modeler sends them."""
    who = require_global_admin("Deploying")
    files = [
        (upload.filename or name, upload.read())
        for name, upload in request.files.items(multi=True)
    ]
    if not files:
        raise ApiError(
            400,
            "No resources contained in the deployment: send each .bpmn or .dmn "
            "file as a multipart file part.",
        )
    name = request.form.get("deployment-name") or None
    source = request.form.get("deployment-source") or "engine-rest"
    # Every deployment here filters duplicates (see the module docstring), so
    # enable-duplicate-filtering and deploy-changed-only need no handling.

    with database().write() as session:
        result = deployments.deploy(
            session,
            files,
            deployed_by=who.username,
            source=source[:200],
            name=name,
            max_bytes=current_app.extensions["settings"].max_upload_bytes,
        )
        answer = _deployment_answer(session, result)
    logger.info(
        "Deployment from %s by %s: %s",
        source,
        who.username,
        "new" if result.changed else "unchanged",
        extra={"deployment_id": result.deployment_id},
    )
    return jsonify(answer)


def _deployment_answer(session, result) -> dict[str, Any]:
    processes = _current_rows(session, result, "process", ProcessDefinition)
    decisions = _current_rows(session, result, "decision", DecisionDefinition)
    if result.deployment_id is not None:
        # Camunda lists what this deployment created, not what it left as it was.
        processes = [r for r in processes if r.deployment_id == result.deployment_id]
        decisions = [r for r in decisions if r.deployment_id == result.deployment_id]
        deployment = session.get(Deployment, result.deployment_id)
    else:
        # Nothing changed: name the deployment that holds the current versions.
        owner = (processes or decisions or [None])[0]
        deployment = session.get(Deployment, owner.deployment_id) if owner else None
    if deployment is None:
        deployment = session.scalars(
            select(Deployment).order_by(Deployment.id.desc()).limit(1)
        ).one()
    return {
        **_deployment(deployment),
        "deployedProcessDefinitions": {
            definition_id(r): _definition(r) for r in processes
        },
        "deployedCaseDefinitions": None,
        "deployedDecisionDefinitions": (
            {definition_id(r): _decision(r) for r in decisions} if decisions else None
        ),
        "deployedDecisionRequirementsDefinitions": None,
    }


def _current_rows(session, result, kind: str, model) -> list:
    """Return the stored rows of the deployed items of ``kind``, in file order."""
    rows = []
    for item in result.items:
        if item.kind == kind:
            rows.extend(
                session.scalars(
                    select(model).where(
                        model.key == item.key, model.version == item.version
                    )
                )
            )
    return rows


@bp.post("/process-definition/key/<key>/start")
def start_by_key(key: str):
    """Start the latest version of process ``key``."""
    return _start(_may_start(), key, None)


@bp.post("/process-definition/<definition>/start")
def start_by_id(definition: str):
    """Start a process by definition id (key:version:number)."""
    who = _may_start()
    key, version, number = _split_definition_id(definition)
    with database().read() as session:
        row = session.get(ProcessDefinition, number)
        if row is None or (row.key, row.version) != (key, version):
            raise ApiError(
                404,
                f"No matching definition with id {definition}; ids look like "
                "'key:version:number', as in the answer of deployment/create "
                "(GET /api/v1/process-definitions/{key}/versions lists them).",
            )
    return _start(who, key, version)


def _split_definition_id(definition: str) -> tuple[str, int, int]:
    key, _, rest = definition.partition(":")
    version, _, number = (_row_number(part) for part in rest.partition(":"))
    if not key or version is None or number is None:
        raise ApiError(
            404,
            f"No matching definition with id {definition}; ids look like "
            "'key:version:number', as in the answer of deployment/create.",
        )
    return key, version, number


def _row_number(text: str) -> int | None:
    """Return a row number written in ``text``, or None if it cannot be one."""
    # ASCII digits only ("²" is a digit to str.isdigit), within BIGINT.
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def _may_start() -> Actor:
    # Before anything is looked up, so that the answer tells an outsider
    # nothing about which definitions exist.
    return require_global_admin("Starting a process from the modeler")


def _start(who: Actor, key: str, version: int | None):
    body = errors.parse_json(request.get_data(cache=True)) if _has_body() else {}
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    variables = _variables(body.get("variables") or {})
    business_key = body.get("businessKey")
    if business_key is not None and not isinstance(business_key, str):
        raise ApiError(400, "businessKey must be a string.")

    with database().write() as session:
        try:
            latest = deployments.latest_definition(session, key)
        except NotFound:
            raise ApiError(
                404, f"No matching process definition with key: {key} and no tenant-id"
            ) from None
        if version is not None and version != latest.version:
            raise ApiError(
                400,
                f"Process '{key}' version {version} is not the latest; only the "
                f"latest version can be started, which is version {latest.version} "
                f"with id {definition_id(latest)}. Deploy the diagram again to "
                "get its current id.",
            )
        instance = instances.start_instance(
            session,
            key,
            actor=who,
            business_key=business_key,
            variables=variables,
            settings=current_app.extensions["settings"],
        )
        answer = _instance(instance)
    return jsonify(answer)


def _has_body() -> bool:
    return bool(request.get_data(cache=True).strip())


def _instance(row: ProcessInstance) -> dict[str, Any]:
    return {
        "links": _self_link(f"engine-rest/process-instance/{row.id}"),
        "id": str(row.id),
        "definitionId": definition_id(row.definition),
        "businessKey": row.business_key,
        "caseInstanceId": None,
        "ended": row.status in (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED),
        "suspended": False,
        "tenantId": None,
    }


@bp.get("/process-instance/<instance_id>")
def get_process_instance(instance_id: str):
    """Show a process instance (the ``self`` link of a start's answer)."""
    who = require_admin()
    with database().read() as session:
        number = _row_number(instance_id)
        row = session.get(ProcessInstance, number) if number is not None else None
        if row is None or not who.has_role(ADMINISTRATOR, row.domain_path):
            raise ApiError(
                404,
                f"Process instance with id {instance_id} does not exist in the "
                "security domains you administer",
            )
        return jsonify(_instance(row))


_CONVERTERS = {
    "string": lambda v: v if isinstance(v, str) else None,
    "boolean": lambda v: v if isinstance(v, bool) else None,
    "integer": lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
    "long": lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
    "short": lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
    "double": lambda v: (
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    ),
    "date": lambda v: v if isinstance(v, str) else None,
}


def _variables(raw: Any) -> dict[str, Any]:
    """Turn Camunda's {"name": {"value": ..., "type": ...}} into plain values."""
    if not isinstance(raw, dict):
        raise ApiError(400, "variables must be an object of name to {value, type}.")
    values: dict[str, Any] = {}
    for name, typed in raw.items():
        if not isinstance(typed, dict):
            raise ApiError(
                400, f"Variable '{name}' must be an object with 'value' and 'type'."
            )
        value, kind = typed.get("value"), str(typed.get("type") or "").lower()
        if value is None or kind == "null":
            values[name] = None
        elif kind == "json":
            values[name] = _json_value(name, value)
        elif kind in _CONVERTERS:
            converted = _CONVERTERS[kind](value)
            if converted is None:
                raise ApiError(
                    400,
                    f"Cannot convert value '{value}' of variable '{name}' to type "
                    f"{typed.get('type')}.",
                )
            values[name] = converted
        elif kind == "":
            values[name] = value
        else:
            raise ApiError(
                400,
                f"Unsupported value type '{typed.get('type')}' of variable '{name}'; "
                "use String, Boolean, Integer, Long, Short, Double, Date, Json or "
                "Null.",
            )
    return values


def _json_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ApiError(
            400, f"Variable '{name}' of type Json does not hold valid JSON."
        ) from None
