"""Every operation of /api/v1: no credentials, the wrong role, the wrong domain.

The organisation is that of helpers_provisioning plus carla, administrator of
acme/americas only. jdoe (acme/emea/paris) has a pending hardware request
whose first approval step is open. For each operation the table says who is
the wrong role and who is in the wrong security domain, and what they get: a
status (403 or 404), or ``HIDDEN`` for a list that answers 200 without
jdoe's item. Operations that depend on neither (who am I, the CSRF token, the
request types, submitting one's own request) are only checked without
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from helpers_api import Api, error_of, make_api

from engine import api_tokens, instances
from engine.identity import ADMINISTRATOR, actor_for
from engine.provisioning import directory
from engine.provisioning.requests import APPROVE_STEP

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
        wrong_role=("lucia", 403),
        wrong_domain=("john", 403),
    ),
    Case(
        "POST",
        "/api/v1/tasks/{task_id}/unclaim",
        wrong_role=("claire", 403),
        wrong_domain=("carla", 403),
    ),
    Case(
        "POST",
        "/api/v1/tasks/{task_id}/complete",
        DECIDE,
        wrong_role=("lucia", 403),
        wrong_domain=("john", 403),
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
        )
        token, _ = api_tokens.create_token(session, "jdoe", name="jdoe's script")
        token_id = token.id
    request_id = api.org.new_hardware("jdoe")
    row = api.org.request(request_id)
    task_id = api.org.task(request_id, APPROVE_STEP)
    with database.write() as session:
        # The unclaim cases need the task held by someone in scope.
        instances.claim_task(session, task_id, actor=actor_for(session, "anna"))
    return api, {
        "request_id": request_id,
        "instance_id": row.instance_id,
        "task_id": task_id,
        "token_id": token_id,
        "incident_id": -1,
    }


def _call(api: Api, case: Case, values: dict, username: str | None):
    path = case.path.format(**values)
    if case.path == "/api/v1/deployments" and case.method == "POST":
        return api.client.post(
            path,
            data={"name": "x"},
            headers=api.headers(username) if username else {},
        )
    return api.call(case.method, path, username, json=case.body)


def _ids(case: Case) -> str:
    return f"{case.method} {case.path}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_without_credentials_is_401(world, case):
    api, values = world

    response = _call(api, case, values, None)

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def _check(api: Api, case: Case, values: dict, who: tuple[str, int | str]):
    username, expected = who
    response = _call(api, case, values, username)
    if expected == HIDDEN:
        assert response.status_code == 200, response.get_json()
        listed = [item["id"] for item in response.get_json()["items"]]
        assert values[case.hidden] not in listed
    else:
        assert response.status_code == expected, response.get_json()
        error_of(response)


@pytest.mark.parametrize("case", [c for c in CASES if c.wrong_role], ids=_ids)
def test_wrong_role_is_refused(world, case):
    api, values = world
    _check(api, case, values, case.wrong_role)


@pytest.mark.parametrize("case", [c for c in CASES if c.wrong_domain], ids=_ids)
def test_wrong_security_domain_is_refused(world, case):
    api, values = world
    _check(api, case, values, case.wrong_domain)


def test_table_covers_every_documented_operation(world):
    api, _ = world
    document = api.client.get("/api/v1/openapi.json").get_json()
    protected = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security") != []
    }
    covered = {(c.method, c.path.split("?")[0]) for c in CASES}
    covered = {(m, p.replace("new_token", "{key}")) for m, p in covered}

    assert covered == protected


def test_right_people_succeed_where_the_table_refuses(world):
    """Guard the table: the refusals above are about the caller, not the call."""
    api, values = world
    shown = api.call("GET", f"/api/v1/requests/{values['request_id']}", "hugo")
    admin = api.call("GET", f"/api/v1/instances/{values['instance_id']}", "admin")
    unclaim = api.call("POST", f"/api/v1/tasks/{values['task_id']}/unclaim", "anna")

    assert shown.status_code == 200
    assert admin.status_code == 200
    assert unclaim.status_code == 200
