"""The OpenAPI 3 document of /api/v1, written by hand to match the views.

Tests check that every route of the blueprint is documented here and the
reverse, and schemathesis calls every operation with generated data.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_NSTR = {"type": ["string", "null"]}
_OBJ = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref(name)}},
    }


def _json(schema: dict[str, Any], description: str = "Done.") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    responses = {str(s): {"$ref": f"#/components/responses/{s}"} for s in statuses}
    responses["default"] = {"$ref": "#/components/responses/error"}
    return responses


def _param(name: str, where: str, schema: dict[str, Any], text: str, required=False):
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": text,
    }


_LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 200},
    "At most this many items (default 50).",
)
_OFFSET = _param(
    "offset",
    "query",
    {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
    "Skip this many items.",
)
_TASK_ID = _param("task_id", "path", _STR, "Task id (a UUID).")
_INSTANCE_ID = _param("instance_id", "path", _INT, "Process instance number.")
_REQUEST_ID = _param("request_id", "path", _INT, "Request number.")


def _op(
    summary: str,
    *,
    tag: str,
    ok: dict[str, Any],
    errors: tuple[int, ...] = (401,),
    params: list | None = None,
    body: dict[str, Any] | None = None,
    status: str = "200",
    public: bool = False,
    description: str = "",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {status: ok, **_errors(*errors)},
    }
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if public:
        operation["security"] = []
    return operation


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "fields"],
                "properties": {
                    "code": {**_STR, "description": "Stable code for programs."},
                    "message": {
                        **_STR,
                        "description": "What was wrong and what to do.",
                    },
                    "fields": {
                        "type": "object",
                        "additionalProperties": _STR,
                        "description": "Per submitted field (or file), what is wrong.",
                    },
                },
            }
        },
    },
    "Me": {
        "type": "object",
        "properties": {
            "username": _STR,
            "display_name": _STR,
            "domain_path": _STR,
            "roles": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"role": _STR, "domain_path": _STR},
                },
            },
            "authenticated_by": {
                "type": "string",
                "enum": ["session", "token", "basic"],
            },
        },
    },
    "ApiToken": {
        "type": "object",
        "properties": {
            "id": _INT,
            "name": _STR,
            "owner": _STR,
            "shown": {**_STR, "description": "The first characters of the secret."},
            "roles": {"type": ["array", "null"], "items": _STR},
            "created_at": _TIME,
            "expires_at": _TIME,
            "last_used_at": _TIME,
            "revoked_at": _TIME,
            "active": _BOOL,
        },
    },
    "NewApiToken": {
        "allOf": [
            _ref("ApiToken"),
            {
                "type": "object",
                "properties": {
                    "token": {**_STR, "description": "The secret; shown this once."}
                },
            },
        ]
    },
    "Task": {
        "type": "object",
        "properties": {
            "id": _STR,
            "instance_id": _INT,
            "process_key": _STR,
            "task_spec": {**_STR, "description": "BPMN id of the user task."},
            "name": _STR,
            "lane": _NSTR,
            "domain_path": _STR,
            "assignee": _NSTR,
            "candidate_groups": {"type": "array", "items": _STR},
            "candidate_users": {"type": "array", "items": _STR},
            "status": {"type": "string", "enum": ["open", "completed", "cancelled"]},
            "form": {
                **_OBJ,
                "description": "Form fields: id, type, label, validation.",
            },
            "saved_data": _OBJ,
            "created_at": _TIME,
            "due_at": _TIME,
            "completed_at": _TIME,
            "completed_by": _NSTR,
        },
    },
    "Instance": {
        "type": "object",
        "properties": {
            "id": _INT,
            "process_key": _STR,
            "version": _INT,
            "business_key": _NSTR,
            "initiator": _STR,
            "domain_path": _STR,
            "status": {
                "type": "string",
                "enum": ["running", "completed", "cancelled", "incident"],
            },
            "end_event": _NSTR,
            "created_at": _TIME,
            "updated_at": _TIME,
            "ended_at": _TIME,
            "cancel_reason": _NSTR,
            "cancelled_by": _NSTR,
        },
    },
    "InstanceDetail": {
        "allOf": [
            _ref("Instance"),
            {
                "type": "object",
                "properties": {
                    "open_tasks": {"type": "array", "items": _ref("Task")},
                    "history": {"type": "array", "items": _OBJ},
                    "incidents": {"type": "array", "items": _ref("Incident")},
                    "timers": {"type": "array", "items": _OBJ},
                    "data": _OBJ,
                    "current_elements": {"type": "array", "items": _STR},
                },
            },
        ]
    },
    "Incident": {
        "type": "object",
        "properties": {
            "id": _INT,
            "instance_id": _INT,
            "element_id": _NSTR,
            "error_type": _STR,
            "message": _STR,
            "status": {"type": "string", "enum": ["open", "resolved"]},
            "attempts": _INT,
            "created_at": _TIME,
            "resolved_at": _TIME,
            "resolved_by": _NSTR,
        },
    },
    "Definition": {
        "type": "object",
        "properties": {
            "id": _INT,
            "key": _STR,
            "version": _INT,
            "name": _STR,
            "deployment_id": _INT,
            "resource": _STR,
            "created_at": _TIME,
        },
    },
    "Deployment": {
        "type": "object",
        "properties": {
            "id": _INT,
            "name": _STR,
            "source": _STR,
            "deployed_by": _STR,
            "deployed_at": _TIME,
            "files": {"type": "array", "items": _STR},
        },
    },
    "DeploymentResult": {
        "type": "object",
        "properties": {
            "deployment_id": {"type": ["integer", "null"]},
            "changed": _BOOL,
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": ["process", "decision"]},
                        "key": _STR,
                        "version": _INT,
                        "status": {"type": "string", "enum": ["new", "unchanged"]},
                    },
                },
            },
        },
    },
    "RequestType": {
        "type": "object",
        "properties": {
            "key": _STR,
            "label": _STR,
            "fields": {"type": "array", "items": _OBJ},
        },
    },
    "Request": {
        "type": "object",
        "properties": {
            "id": _INT,
            "instance_id": {"type": ["integer", "null"]},
            "request_type": _STR,
            "requester": _STR,
            "domain_path": _STR,
            "token_class": _STR,
            "token_model": _STR,
            "old_serial": _STR,
            "group_name": _STR,
            "status": {
                "type": "string",
                "enum": [
                    "pending",
                    "completed",
                    "rejected",
                    "cancelled",
                    "expired",
                    "failed",
                ],
            },
            "current_step": _STR,
            "comment_to_user": _STR,
            "outcome": _STR,
            "created_at": _TIME,
            "updated_at": _TIME,
            "ended_at": _TIME,
        },
    },
    "RequestDetail": {
        "allOf": [
            _ref("Request"),
            {
                "type": "object",
                "properties": {
                    "timeline": {"type": "array", "items": _OBJ},
                    "held_by": {"type": "array", "items": _OBJ},
                    "my_tasks": {"type": "array", "items": _ref("Task")},
                    "delivery": _OBJ,
                    "can_cancel": _BOOL,
                },
            },
        ]
    },
    "Completion": {
        "type": "object",
        "properties": {
            "task": _ref("Task"),
            "instance": _ref("Instance"),
            "request": {"oneOf": [_ref("Request"), {"type": "null"}]},
        },
    },
}

_RESPONSES = {
    str(status): {
        "description": text,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    for status, text in {
        400: "Malformed call, such as a body that is not valid JSON.",
        401: "Not authenticated.",
        403: "Not allowed.",
        404: "Not found or not visible.",
        409: "Conflict with the current state.",
        415: "Body is not JSON.",
        422: "Validation failed.",
    }.items()
} | {
    "error": {
        "description": "Any other error, in the same shape; a 405 names the "
        "allowed methods in the Allow header.",
        "content": {"application/json": {"schema": _ref("Error")}},
    }
}

_RESPONSES["401"]["headers"] = {
    "WWW-Authenticate": {
        "description": 'The challenge: Bearer realm="api", with '
        'error="invalid_token" when the token sent was refused.',
        "schema": _STR,
    }
}

_ADMIN = (401, 403)
#: the longest reason accepted, as for any text field of a task form
_MAX_REASON = 4000
_REASON = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": {**_STR, "minLength": 1, "maxLength": _MAX_REASON}},
}
_TASK_REACH = (
    "A task outside your reach (not in a queue you hold in its security "
    "domain, not named on it, not administered by you) answers 404 on every "
    "task operation, as if it did not exist."
)
_PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": _op(
            "This document", tag="Reference", ok=_json(_OBJ), errors=(), public=True
        )
    },
    "/api/v1/docs": {
        "get": _op(
            "This document as a page",
            tag="Reference",
            ok={
                "description": "HTML page.",
                "content": {"text/html": {"schema": _STR}},
            },
            errors=(),
            public=True,
        )
    },
    "/api/v1/csrf-token": {
        "get": _op(
            "The CSRF token of the browser session",
            tag="Authentication",
            ok=_json({"type": "object", "properties": {"csrf_token": _STR}}),
            description="Browser sessions send it in the X-CSRFToken header with "
            "every call that changes data. API tokens need no CSRF token.",
        )
    },
    "/api/v1/me": {"get": _op("Who am I", tag="Authentication", ok=_json(_ref("Me")))},
    "/api/v1/api-tokens": {
        "get": _op(
            "List my API tokens", tag="Authentication", ok=_json(_list_of("ApiToken"))
        ),
        "post": _op(
            "Create an API token",
            tag="Authentication",
            status="201",
            ok=_json(_ref("NewApiToken"), "Created; the secret is in 'token'."),
            errors=(400, 401, 403, 415, 422),
            description="Only from a signed-in session (with the CSRF header): an "
            "API token cannot create tokens.",
            body={
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {**_STR, "minLength": 1, "maxLength": 100},
                    "roles": {"type": "array", "items": _STR},
                    "expires_in_days": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 3650,
                    },
                },
            },
        ),
    },
    "/api/v1/api-tokens/{token_id}": {
        "delete": _op(
            "Revoke an API token",
            tag="Authentication",
            ok=_json(_ref("ApiToken")),
            errors=(401, 404),
            params=[_param("token_id", "path", _INT, "Token id.")],
        )
    },
    "/api/v1/request-types": {
        "get": _op(
            "List the request types and their forms",
            tag="Requests",
            ok=_json(_list_of("RequestType")),
        )
    },
    "/api/v1/requests": {
        "get": _op(
            "List requests",
            tag="Requests",
            ok=_json(_list_of("Request")),
            errors=(400, 401),
            params=[
                _param(
                    "scope",
                    "query",
                    {"type": "string", "enum": ["mine", "staff"]},
                    "mine (default): your requests; staff: your domains' requests.",
                ),
                _param(
                    "status",
                    "query",
                    {
                        "type": "string",
                        "enum": [
                            "pending",
                            "completed",
                            "rejected",
                            "cancelled",
                            "expired",
                            "failed",
                        ],
                    },
                    "Only requests in this status.",
                ),
                _param("request_type", "query", _STR, "Only requests of this type."),
                _LIMIT,
                _OFFSET,
            ],
        ),
        "post": _op(
            "Submit a request",
            tag="Requests",
            status="201",
            ok=_json(_ref("Request"), "Submitted; its process has started."),
            errors=(400, 401, 403, 404, 409, 415, 422),
            body={
                "type": "object",
                "required": ["request_type", "form"],
                "properties": {
                    "request_type": _STR,
                    "form": {**_OBJ, "description": "Fields of the request type."},
                },
            },
        ),
    },
    "/api/v1/requests/{request_id}": {
        "get": _op(
            "Show a request",
            tag="Requests",
            ok=_json(_ref("RequestDetail")),
            errors=(401, 404),
            params=[_REQUEST_ID],
        )
    },
    "/api/v1/requests/{request_id}/cancel": {
        "post": {
            **_op(
                "Cancel a pending request",
                tag="Requests",
                ok=_json(_ref("Request")),
                errors=(400, 401, 403, 404, 409, 415, 422),
                params=[_REQUEST_ID],
            ),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "reason": {**_STR, "maxLength": _MAX_REASON}
                            },
                        }
                    }
                },
            },
        }
    },
    "/api/v1/tasks": {
        "get": _op(
            "List my open tasks and those of my queues",
            tag="Tasks",
            ok=_json(_list_of("Task")),
            errors=(400, 401),
            params=[
                _param("assigned_only", "query", _BOOL, "Only tasks assigned to me."),
                _param("queue", "query", _STR, "Only this queue (a role name)."),
                _param("process_key", "query", _STR, "Only tasks of this process."),
                _LIMIT,
                _OFFSET,
            ],
        )
    },
    "/api/v1/tasks/{task_id}": {
        "get": _op(
            "Show a task",
            tag="Tasks",
            ok=_json(_ref("Task")),
            errors=(401, 404),
            params=[_TASK_ID],
            description=_TASK_REACH,
        )
    },
    "/api/v1/tasks/{task_id}/claim": {
        "post": _op(
            "Claim a task",
            tag="Tasks",
            ok=_json(_ref("Task")),
            errors=(401, 403, 404, 409),
            params=[_TASK_ID],
            description="403 when separation of duties keeps you from this task; "
            "409 (code task_claimed) when someone else holds it, naming them, or "
            "when it is no longer open. Claiming a task you hold changes nothing. "
            + _TASK_REACH,
        )
    },
    "/api/v1/tasks/{task_id}/unclaim": {
        "post": _op(
            "Put a task back in its queue",
            tag="Tasks",
            ok=_json(_ref("Task")),
            errors=(401, 403, 404, 409),
            params=[_TASK_ID],
            description="Its assignee or an administrator of its security domain "
            "may (403 for others). 409 (code task_not_claimed) when nobody holds "
            "it, or when it is no longer open. " + _TASK_REACH,
        )
    },
    "/api/v1/tasks/{task_id}/complete": {
        "post": _op(
            "Complete a task",
            tag="Tasks",
            ok=_json(_ref("Completion")),
            errors=(400, 401, 403, 404, 409, 415, 422),
            params=[_TASK_ID],
            description="data holds the task form's values. An approval step "
            "takes decision (approve, reject, cancel, defer), comment, note and "
            "token_model; defer keeps the task open. " + _TASK_REACH,
            body={
                "type": "object",
                "required": ["data"],
                "properties": {"data": _OBJ},
            },
        )
    },
    "/api/v1/process-definitions": {
        "get": _op(
            "List the latest version of each process",
            tag="Definitions",
            ok=_json(_list_of("Definition")),
            errors=_ADMIN,
        )
    },
    "/api/v1/process-definitions/{key}/versions": {
        "get": _op(
            "List every version of a process",
            tag="Definitions",
            ok=_json(_list_of("Definition")),
            errors=(401, 403, 404),
            params=[_param("key", "path", _STR, "Process id.")],
        )
    },
    "/api/v1/deployments": {
        "get": _op(
            "List deployments",
            tag="Definitions",
            ok=_json(_list_of("Deployment")),
            errors=(400, 401, 403),
            params=[_LIMIT, _OFFSET],
        ),
        "post": {
            **_op(
                "Deploy .bpmn and .dmn files",
                tag="Definitions",
                status="201",
                ok=_json(_ref("DeploymentResult"), "Deployed new versions."),
                errors=(400, 401, 403, 422),
                description="Needs the administrator role in a top-level security "
                "domain. Unchanged files create nothing (answer 200, changed false).",
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "name": _STR,
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                            },
                        }
                    }
                },
            },
        },
    },
    "/api/v1/instances": {
        "get": _op(
            "List process instances of the domains I administer",
            tag="Administration",
            ok=_json(_list_of("Instance")),
            errors=(400, 401, 403),
            params=[
                _param(
                    "status",
                    "query",
                    {
                        "type": "string",
                        "enum": ["running", "completed", "cancelled", "incident"],
                    },
                    "Only instances in this status.",
                ),
                _param("process_key", "query", _STR, "Only this process."),
                _LIMIT,
                _OFFSET,
            ],
        )
    },
    "/api/v1/instances/{instance_id}": {
        "get": _op(
            "Show a process instance",
            tag="Administration",
            ok=_json(_ref("InstanceDetail")),
            errors=(401, 403, 404),
            params=[_INSTANCE_ID],
        )
    },
    "/api/v1/instances/{instance_id}/cancel": {
        "post": _op(
            "Cancel a process instance",
            tag="Administration",
            ok=_json(_ref("Instance")),
            errors=(400, 401, 403, 404, 409, 415, 422),
            params=[_INSTANCE_ID],
            body=_REASON,
        )
    },
    "/api/v1/instances/{instance_id}/retry": {
        "post": _op(
            "Retry the failed step of an instance in incident",
            tag="Administration",
            ok=_json(_ref("Instance")),
            errors=(401, 403, 404, 409),
            params=[_INSTANCE_ID],
        )
    },
    "/api/v1/incidents": {
        "get": _op(
            "List incidents of the domains I administer",
            tag="Administration",
            ok=_json(_list_of("Incident")),
            errors=(400, 401, 403),
            params=[
                _param(
                    "status",
                    "query",
                    {"type": "string", "enum": ["open", "resolved"]},
                    "Only incidents in this status.",
                ),
                _LIMIT,
                _OFFSET,
            ],
        )
    },
}

DESCRIPTION = """\
The token provisioning API. Every error has one shape:
`{"error": {"code": "...", "message": "...", "fields": {"field": "..."}}}`.

**Authentication.** Send a personal API token as
`Authorization: Bearer <token>` (create one in the console, with
`POST /api/v1/api-tokens` from a signed-in session, or with
`provisioning api-token create`). A token acts as its owner with the owner's
current roles, narrowed to the roles it was created with. Calls from a
signed-in browser session work too; those that change data must send the
session's CSRF token in the `X-CSRFToken` header (`GET /api/v1/csrf-token`).
Calls with a token need no CSRF token.

**Status codes.** 400 malformed call (a body that is not valid JSON says
where it breaks); 401 no or refused credentials, with a `WWW-Authenticate`
challenge; 403 not allowed (role, separation of duties, or missing CSRF
header); 404 unknown or not visible to you (outside your security domains);
405 a method the path does not take, with the `Allow` header; 409 conflict
with the current state (a task completed or claimed by someone else, a task
nobody holds put back, a request that has ended); 422 data that fails
validation, with one message per field in `fields`.

Camunda Modeler deploys and starts processes through a separate Camunda 7
REST subset under `/engine-rest` (HTTP Basic or a token).
"""


def openapi_document(server_url: str = "") -> dict[str, Any]:
    """Return the OpenAPI 3.1 document, with ``server_url`` as the server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Token provisioning API",
            "version": "1.0.0",
            "description": DESCRIPTION,
        },
        "servers": [{"url": server_url or "/"}],
        "security": [{"apiToken": []}, {"session": []}],
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "responses": _RESPONSES,
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (starts with pat_).",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "The console's session; unsafe methods also "
                    "need the X-CSRFToken header.",
                },
            },
        },
    }
