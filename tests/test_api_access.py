"""Every operation of /api/v1 and /engine-rest: no credentials, the wrong role,
the wrong domain.

The organisation is that of helpers_provisioning plus carla, administrator of
acme/americas only. jdoe (acme/emea/paris) has a pending hardware request
whose first approval step is open, and a process started by claire (also
acme/emea/paris) stopped on a failing script: an open incident. For each
operation the table says who is the wrong role and who is in the wrong
security domain, and what they get: a status (403 or 404), or ``HIDDEN`` for
a list that answers 200 without the world's item. A task outside someone's
reach answers 404 on every task operation, as reading it does. Operations
that depend on neither (who am I, the CSRF token, the request types,
submitting one's own request, the modeler's connection check) are only
checked without credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_api import Api, error_of, make_api
from sqlalchemy import select

from engine import api_tokens, deployments, instances
from engine.identity import ADMINISTRATOR, actor_for
from engine.models import HumanTask, Incident, IncidentStatus
from engine.provisioning import directory
from engine.provisioning.requests import APPROVE_STEP

FAILING_PROCESS = Path(__file__).parent / "data" / "engine_script_fails.bpmn"

HIDDEN = "hidden"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: dict | None = None
    wrong_role: tuple[str, int | str] | None = None
    wrong_domain: tuple[str, int | str] | None = None
    #: the key of ``world`` whose value must not be listed (HIDDEN cases)
    hidden: str = ""


DECIDE = {"data": {"decision": "approve"}}
CASES = [
    Case("GET", "/api/v1/me"),
    Case("GET", "/api/v1/csrf-token"),
    Case("GET", "/api/v1/request-types"),
    Case("POST", "/api/v1/requests", {"request_type": "new_token", "form": {}}),
    Case(
        "GET",
        "/api/v1/api-tokens",
        wrong_domain=("john", HIDDEN),
        hidden="token_id",
    ),
    Case("POST", "/api/v1/api-tokens", {"name": "x"}, wrong_role=("jdoe", 403)),
    Case(
        "DELETE",
        "/api/v1/api-tokens/{token_id}",
        wrong_role=("anna", 404),
        wrong_domain=("carla", 404),
    ),
    Case(
        "GET",
        "/api/v1/requests?scope=staff",
        wrong_role=("claire", HIDDEN),
        wrong_domain=("john", HIDDEN),
        hidden="request_id",
    ),
    Case(
        "GET",
        "/api/v1/requests/{request_id}",
        wrong_role=("claire", 404),
        wrong_domain=("john", 404),
    ),
    Case(
        "POST",
        "/api/v1/requests/{request_id}/cancel",
        {"reason": "no"},
        wrong_role=("hugo", 403),
        wrong_domain=("emily", 404),
    ),
    Case(
        "GET",
        "/api/v1/tasks",
        wrong_role=("lucia", HIDDEN),
        wrong_domain=("john", HIDDEN),
        hidden="task_id",
    ),
    Case(
        "GET",
        "/api/v1/tasks/{task_id}",
        wrong_role=("lucia", 404),
        wrong_domain=("john", 404),
    ),
    Case(
        "POST",
        "/api/v1/tasks/{task_id}/claim",
        wrong_role=("lucia", 404),
        wrong_domain=("john", 404),
    ),
    Case(
        "POST",
        "/api/v1/tasks/{task_id}/unclaim",
        wrong_role=("claire", 404),
        wrong_domain=("carla", 404),
    ),
    Case(
        "POST",
        "/api/v1/tasks/{task_id}/complete",
        DECIDE,
        wrong_role=("lucia", 404),
        wrong_domain=("john", 404),
    ),
    Case("GET", "/api/v1/process-definitions", wrong_role=("anna", 403)),
    Case(
        "GET",
        "/api/v1/process-definitions/new_token/versions",
        wrong_role=("anna", 403),
    ),
    Case("GET", "/api/v1/deployments", wrong_role=("anna", 403)),
    Case(
        "POST",
        "/api/v1/deployments",
        wrong_role=("anna", 403),
        wrong_domain=("emma", 403),
    ),
    Case(
        "GET",
        "/api/v1/instances",
        wrong_role=("anna", 403),
        wrong_domain=("carla", HIDDEN),
        hidden="instance_id",
    ),
    Case(
        "GET",
        "/api/v1/instances/{instance_id}",
        wrong_role=("anna", 403),
        wrong_domain=("carla", 404),
    ),
    Case(
        "POST",
        "/api/v1/instances/{instance_id}/cancel",
        {"reason": "no"},
        wrong_role=("anna", 403),
        wrong_domain=("carla", 404),
    ),
    Case(
        "POST",
        "/api/v1/instances/{instance_id}/retry",
        wrong_role=("anna", 403),
        wrong_domain=("carla", 404),
    ),
    Case(
        "GET",
        "/api/v1/incidents",
        wrong_role=("anna", 403),
        wrong_domain=("carla", HIDDEN),
        hidden="incident_id",
    ),
    Case("GET", "/engine-rest/deployment?maxResults=0"),
    Case("GET", "/engine-rest/deployment", wrong_role=("anna", 403)),
    Case(
        "GET",
        "/engine-rest/deployment/{deployment_id}",
        wrong_role=("anna", 403),
    ),
    Case(
        "POST",
        "/engine-rest/deployment/create",
        wrong_role=("anna", 403),
        wrong_domain=("emma", 403),
    ),
    Case(
        "POST",
        "/engine-rest/process-definition/key/{process_key}/start",
        {},
        wrong_role=("anna", 403),
        wrong_domain=("emma", 403),
    ),
    Case(
        "POST",
        "/engine-rest/process-definition/{definition_id}/start",
        {},
        wrong_role=("anna", 403),
        wrong_domain=("emma", 403),
    ),
    Case(
        "GET",
        "/engine-rest/process-instance/{instance_id}",
        wrong_role=("anna", 403),
        wrong_domain=("carla", 404),
    ),
]


@pytest.fixture
def world(database, settings) -> tuple[Api, dict]:
    api = make_api(database, settings)
    with database.write() as session:
        directory.create_user(
            session,
            username="carla",
            display_name="Carla",
            email="carla@example.org",
            domain_path="acme/americas",
            roles=[(ADMINISTRATOR, "acme/americas")],
            actor="system",
        )
        token, _ = api_tokens.create_token(
            session, "jdoe", name="jdoe's script", actor="system"
        )
        token_id = token.id
    request_id = api.org.new_hardware("jdoe")
    row = api.org.request(request_id)
    task_id = api.org.task(request_id, APPROVE_STEP)
    with database.write() as session:
        # The unclaim cases need the task held by someone in scope.
        instances.claim_task(session, task_id, actor=actor_for(session, "anna"))
        definition = deployments.latest_definition(session, "new_token")
        definition_id = f"{definition.key}:{definition.version}:{definition.id}"
        deployment_id = definition.deployment_id
    return api, {
        "request_id": request_id,
        "instance_id": row.instance_id,
        "task_id": task_id,
        "token_id": token_id,
        "incident_id": _incident_in_paris(database),
        "process_key": "new_token",
        "definition_id": definition_id,
        "deployment_id": deployment_id,
    }


def _incident_in_paris(database) -> int:
    """Stop a process of claire's (acme/emea/paris) on a failing script."""
    with database.write() as session:
        deployments.deploy(
            session,
            [(FAILING_PROCESS.name, FAILING_PROCESS.read_bytes())],
            deployed_by="admin",
            source="tests",
        )
        instance = instances.start_instance(
            session, "engine_script_fails", actor=actor_for(session, "claire")
        )
        instance_id = instance.id
    with database.read() as session:
        task_id = session.scalars(
            select(HumanTask.id).where(HumanTask.instance_id == instance_id)
        ).one()
    with database.write() as session:
        instances.complete_task(
            session, task_id, actor=actor_for(session, "hugo"), data={"divisor": 0}
        )
    with database.read() as session:
        return session.scalars(
            select(Incident.id).where(
                Incident.instance_id == instance_id,
                Incident.status == IncidentStatus.OPEN,
            )
        ).one()


def _call(api: Api, case: Case, values: dict, username: str | None):
    path = case.path.format(**values)
    if case.method == "POST" and case.path.endswith(("/deployments", "/create")):
        return api.client.post(
            path,
            data={"name": "x"},
            headers=api.headers(username) if username else {},
        )
    return api.call(case.method, path, username, json=case.body)


def _ids(case: Case) -> str:
    return f"{case.method} {case.path}"


def _is_camunda(case: Case) -> bool:
    return case.path.startswith("/engine-rest/")


def _error_kind(case: Case, response) -> str:
    """Return the error's code (/api/v1) or type (/engine-rest), checking its shape."""
    if not _is_camunda(case):
        return error_of(response)["code"]
    body = response.get_json()
    assert set(body) == {"type", "message", "code"}, body
    return body["type"]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_without_credentials_is_401(world, case):
    api, values = world

    response = _call(api, case, values, None)

    assert response.status_code == 401
    if _is_camunda(case):
        assert _error_kind(case, response) == "AuthenticationException"
        assert response.headers["WWW-Authenticate"] == 'Basic realm="engine-rest"'
    else:
        assert _error_kind(case, response) == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def _check(api: Api, case: Case, values: dict, who: tuple[str, int | str]):
    username, expected = who
    response = _call(api, case, values, username)
    if expected == HIDDEN:
        assert response.status_code == 200, response.get_json()
        listed = [item["id"] for item in response.get_json()["items"]]
        assert values[case.hidden] not in listed
    else:
        assert response.status_code == expected, response.get_json()
        _error_kind(case, response)


@pytest.mark.parametrize("case", [c for c in CASES if c.wrong_role], ids=_ids)
def test_wrong_role_is_refused(world, case):
    api, values = world
    _check(api, case, values, case.wrong_role)


@pytest.mark.parametrize("case", [c for c in CASES if c.wrong_domain], ids=_ids)
def test_wrong_security_domain_is_refused(world, case):
    api, values = world
    _check(api, case, values, case.wrong_domain)


def _shape(path: str) -> str:
    """Return a path with its parameters blanked: /a/{x} and /a/<y> read /a/{}."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path.split("?")[0])


def test_table_covers_every_documented_operation(world):
    api, _ = world
    document = api.client.get("/api/v1/openapi.json").get_json()
    protected = {
        (method.upper(), _shape(path))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security") != []
    }
    covered = {
        (c.method, _shape(c.path.replace("new_token", "{key}")))
        for c in CASES
        if not _is_camunda(c)
    }

    assert covered == protected


def test_table_covers_every_engine_rest_operation_but_the_version(world):
    api, _ = world
    routes = {
        (method, _shape(rule.rule))
        for rule in api.app.url_map.iter_rules()
        if rule.endpoint.startswith("engine_rest.")
        and rule.endpoint != "engine_rest.version"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    covered = {(c.method, _shape(c.path)) for c in CASES if _is_camunda(c)}

    assert covered == routes


def test_right_people_succeed_where_the_table_refuses(world):
    """Guard the table: the refusals above are about the caller, not the call."""
    api, values = world
    shown = api.call("GET", f"/api/v1/requests/{values['request_id']}", "hugo")
    admin = api.call("GET", f"/api/v1/instances/{values['instance_id']}", "admin")
    unclaim = api.call("POST", f"/api/v1/tasks/{values['task_id']}/unclaim", "anna")
    incidents = api.call("GET", "/api/v1/incidents", "admin")
    deployments_listed = api.call("GET", "/engine-rest/deployment", "admin")
    deployment = api.call(
        "GET", f"/engine-rest/deployment/{values['deployment_id']}", "admin"
    )
    instance = api.call(
        "GET", f"/engine-rest/process-instance/{values['instance_id']}", "emma"
    )

    assert shown.status_code == 200
    assert admin.status_code == 200
    assert unclaim.status_code == 200
    assert values["incident_id"] in [i["id"] for i in incidents.get_json()["items"]]
    assert str(values["deployment_id"]) in [
        d["id"] for d in deployments_listed.get_json()
    ]
    assert deployment.get_json()["id"] == str(values["deployment_id"])
    assert instance.get_json()["id"] == str(values["instance_id"])
