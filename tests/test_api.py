"""The REST API under /api/v1: a request from submission to completion, the
error shape, authentication by token and session, and the CSRF rule."""

from __future__ import annotations

import pytest
from helpers_api import Api, error_of, make_api
from helpers_provisioning import SHIPPING_ADDRESS

from engine.provisioning.requests import APPROVE_STEP, HARDWARE_STEP

NEW_HARDWARE = {
    "request_type": "new_token",
    "form": {
        "token_class": "hardware",
        "token_model": "SID700",
        "shipping_address": SHIPPING_ADDRESS,
        "justification": "Starting in the Paris office next week",
    },
}


@pytest.fixture
def api(database, settings) -> Api:
    return make_api(database, settings)


def submit(api: Api, username: str = "jdoe") -> int:
    response = api.call("POST", "/api/v1/requests", username, json=NEW_HARDWARE)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def open_task(api: Api, username: str, spec: str) -> str:
    response = api.call("GET", "/api/v1/tasks", username)
    assert response.status_code == 200
    tasks = [t for t in response.get_json()["items"] if t["task_spec"] == spec]
    assert len(tasks) == 1, response.get_json()
    return tasks[0]["id"]


def test_request_goes_from_submission_to_completion_over_the_api(api):
    request_id = submit(api)

    first = open_task(api, "anna", APPROVE_STEP)
    done = api.call(
        "POST",
        f"/api/v1/tasks/{first}/complete",
        "anna",
        json={"data": {"decision": "approve", "comment": "ok"}},
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["request"]["status"] == "pending"
    # Separation of duties: the second step is not offered to anna.
    assert api.call("GET", "/api/v1/tasks", "anna").get_json()["items"] == []

    second = open_task(api, "marc", APPROVE_STEP)
    api.call(
        "POST",
        f"/api/v1/tasks/{second}/complete",
        "marc",
        json={"data": {"decision": "approve"}},
    )
    distribution = open_task(api, "lucia", HARDWARE_STEP)
    done = api.call(
        "POST",
        f"/api/v1/tasks/{distribution}/complete",
        "lucia",
        json={"data": {"serial_number": "E-700-1", "carrier": "dhl"}},
    )
    assert done.status_code == 200, done.get_json()

    shown = api.call("GET", f"/api/v1/requests/{request_id}", "jdoe").get_json()
    assert shown["status"] == "completed"
    assert [
        r["id"] for r in api.call("GET", "/api/v1/requests", "jdoe").get_json()["items"]
    ] == [request_id]


def test_completing_a_completed_task_answers_409_with_who_did_it(api):
    submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    body = {"data": {"decision": "approve"}}
    assert (
        api.call(
            "POST", f"/api/v1/tasks/{task_id}/complete", "anna", json=body
        ).status_code
        == 200
    )

    again = api.call("POST", f"/api/v1/tasks/{task_id}/complete", "marc", json=body)

    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "task_already_completed"
    assert "already completed by anna" in error["message"]


def test_invalid_form_answers_422_with_one_message_per_field(api):
    response = api.call(
        "POST",
        "/api/v1/requests",
        "jdoe",
        json={"request_type": "new_token", "form": {"token_class": "hardware"}},
    )

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert {"token_model", "justification"} <= set(error["fields"])


def test_unknown_request_type_is_a_field_error(api):
    response = api.call(
        "POST", "/api/v1/requests", "jdoe", json={"request_type": "pony", "form": {}}
    )

    assert response.status_code == 422
    assert error_of(response)["fields"]["request_type"].startswith(
        "Unknown request type 'pony'; the types are new_token,"
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "message"),
    [
        (
            "not json",
            "text/plain",
            415,
            "unsupported_media_type",
            "Send the body as JSON with 'Content-Type: application/json'.",
        ),
        (
            "[1, 2]",
            "application/json",
            400,
            "bad_request",
            'The body must be a JSON object, such as {"reason": "..."}, not an array.',
        ),
        (
            "{bad",
            "application/json",
            400,
            "invalid_json",
            "The body is not valid JSON: Expecting property name enclosed in "
            "double quotes at line 1, column 2 (character 1). Check the quoting "
            "and commas there.",
        ),
        (
            '{"a": 1,\n "b": }',
            "application/json",
            400,
            "invalid_json",
            "The body is not valid JSON: Expecting value at line 2, column 7 "
            "(character 15). Check the quoting and commas there.",
        ),
        (
            b'{"a": "\xff"}',
            "application/json",
            400,
            "invalid_json",
            "The body is not valid JSON: it is not UTF-8 text. Send the body "
            "encoded as UTF-8.",
        ),
        (
            "  ",
            "application/json",
            400,
            "invalid_json",
            'The body is empty; send a JSON object, such as {"reason": "..."}.',
        ),
    ],
    ids=["not-json-type", "array", "bad-object", "bad-second-line", "latin-1", "empty"],
)
def test_malformed_bodies_are_refused_with_the_error_shape(
    api, body, content_type, status, code, message
):
    response = api.client.post(
        "/api/v1/requests",
        headers=api.headers("jdoe"),
        data=body,
        content_type=content_type,
    )

    assert response.status_code == status
    assert error_of(response) == {"code": code, "message": message, "fields": {}}


def test_bad_query_parameter_answers_400_naming_it(api):
    response = api.call("GET", "/api/v1/tasks?limit=lots", "anna")

    assert response.status_code == 400
    error = error_of(response)
    assert (
        error["message"]
        == "Query parameter 'limit' must be a whole number, not 'lots'."
    )
    assert error["fields"] == {"limit": "Give a whole number."}


def test_unknown_api_path_and_method_answer_in_the_error_shape(api):
    missing = api.call("GET", "/api/v1/nothing-here", "jdoe")
    wrong_method = api.call("PUT", "/api/v1/tasks", "jdoe")

    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_wrong_method_on_an_api_route_keeps_the_allow_header(api):
    response = api.call("GET", "/api/v1/instances/1/cancel", "admin")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_unauthenticated_call_is_challenged_for_a_bearer_token(api):
    response = api.client.get("/api/v1/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_token_is_refused_with_401(api):
    token = api.token("jdoe")
    headers = {"Authorization": f"Bearer {token}"}
    me = api.client.get("/api/v1/me", headers=headers).get_json()
    assert me["username"] == "jdoe" and me["authenticated_by"] == "token"
    token_id = api.client.get("/api/v1/api-tokens", headers=headers).get_json()[
        "items"
    ][0]["id"]

    assert (
        api.client.delete(f"/api/v1/api-tokens/{token_id}", headers=headers).status_code
        == 200
    )
    refused = api.client.get("/api/v1/me", headers=headers)

    assert refused.status_code == 401
    assert error_of(refused)["message"] == (
        "The API token is unknown, revoked or expired; create a new one and send "
        "it as 'Authorization: Bearer <token>'."
    )
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="invalid_token"'
    )


def test_token_narrowed_to_one_role_cannot_use_the_others(api):
    narrowed = api.headers("admin", roles=[])

    me = api.client.get("/api/v1/me", headers=narrowed).get_json()
    refused = api.client.get("/api/v1/instances", headers=narrowed)

    assert me["roles"] == []
    assert refused.status_code == 403
    assert error_of(refused)["message"] == (
        "This needs the administrator role (your API token does not carry it)."
    )


def test_token_cannot_carry_a_role_its_owner_lacks(api):
    with pytest.raises(Exception) as raised:
        api.token("jdoe", roles=["administrator"])

    assert raised.value.field_errors == {
        "roles": "jdoe does not hold administrator; a token can only carry roles "
        "its owner holds."
    }


def sign_in(api: Api, username: str) -> None:
    """Give the test client a console session for ``username``."""
    from engine.provisioning import directory

    with api.org.database.read() as session:
        user_id = directory.get_user(session, username).id
    with api.client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True


def test_session_calls_that_change_data_need_the_csrf_header(api):
    api.app.config["WTF_CSRF_ENABLED"] = True
    sign_in(api, "jdoe")

    without = api.client.post("/api/v1/requests", json=NEW_HARDWARE)
    csrf_token = api.client.get("/api/v1/csrf-token").get_json()["csrf_token"]
    with_header = api.client.post(
        "/api/v1/requests", json=NEW_HARDWARE, headers={"X-CSRFToken": csrf_token}
    )

    assert without.status_code == 403
    assert error_of(without)["code"] == "csrf_failed"
    assert with_header.status_code == 201, with_header.get_json()
    assert api.client.get("/api/v1/me").get_json()["authenticated_by"] == "session"


def test_bearer_calls_need_no_csrf_token(api):
    api.app.config["WTF_CSRF_ENABLED"] = True

    response = api.call("POST", "/api/v1/requests", "jdoe", json=NEW_HARDWARE)

    assert response.status_code == 201


def test_a_bad_token_is_refused_even_with_a_session(api):
    sign_in(api, "jdoe")

    response = api.client.get(
        "/api/v1/me", headers={"Authorization": "Bearer pat_not-a-token"}
    )

    assert response.status_code == 401


def test_session_creates_a_token_shown_once_and_a_token_cannot(api):
    sign_in(api, "anna")
    csrf_token = api.client.get("/api/v1/csrf-token").get_json()["csrf_token"]

    created = api.client.post(
        "/api/v1/api-tokens",
        json={"name": "modeler"},
        headers={"X-CSRFToken": csrf_token},
    )
    listed = api.client.get("/api/v1/api-tokens").get_json()["items"]
    by_token = api.call("POST", "/api/v1/api-tokens", "anna", json={"name": "x"})

    assert created.status_code == 201
    secret = created.get_json()["token"]
    assert secret.startswith("pat_")
    assert all("token" not in t for t in listed)
    assert listed[0]["shown"] == secret[:12]
    assert by_token.status_code == 403


def test_unexpected_error_answers_500_without_a_stack_trace(api, monkeypatch):
    from engine import instances

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(instances, "list_tasks", explode)
    api.app.config["PROPAGATE_EXCEPTIONS"] = False

    response = api.call("GET", "/api/v1/tasks", "anna")

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "secret internals" not in error["message"]
    assert "error reference" in error["message"]


def test_admin_sees_instances_of_their_domains_only(api):
    request_id = submit(api)
    instance_id = api.org.request(request_id).instance_id

    admin_view = api.call("GET", f"/api/v1/instances/{instance_id}", "admin")
    emily_request = submit(api, "emily")
    emily_instance = api.org.request(emily_request).instance_id
    emma_list = api.call("GET", "/api/v1/instances", "emma").get_json()["items"]

    assert admin_view.status_code == 200
    assert admin_view.get_json()["open_tasks"][0]["task_spec"] == APPROVE_STEP
    assert [i["id"] for i in emma_list] == [instance_id]
    assert emily_instance not in [i["id"] for i in emma_list]


def test_openapi_document_lists_every_route_of_the_blueprint(api):
    document = api.client.get("/api/v1/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
    }
    routed = set()
    for rule in api.app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = rule.rule.replace("<id:", "{").replace("<", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routed.add((path, method))

    assert documented == routed


def test_reference_page_renders_every_operation(api):
    page = api.client.get("/api/v1/docs").get_data(as_text=True)

    assert "<code>/api/v1/tasks/{task_id}/complete</code>" in page
    assert "X-CSRFToken" in page


def test_claiming_a_task_someone_else_holds_is_409_naming_them(api):
    request_id = submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    claimed = api.call("POST", f"/api/v1/tasks/{task_id}/claim", "anna")
    assert claimed.status_code == 200, claimed.get_json()
    name = claimed.get_json()["name"]

    response = api.call("POST", f"/api/v1/tasks/{task_id}/claim", "marc")

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "task_claimed",
        "message": f"Task '{name}' of request-{request_id} is already claimed by "
        "anna; ask them to unclaim it, or an administrator to assign it to you.",
        "fields": {},
    }


def test_claiming_a_task_one_holds_again_changes_nothing(api):
    submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    api.call("POST", f"/api/v1/tasks/{task_id}/claim", "anna")

    again = api.call("POST", f"/api/v1/tasks/{task_id}/claim", "anna")

    assert again.status_code == 200
    assert again.get_json()["assignee"] == "anna"


def test_unclaiming_a_task_nobody_holds_is_409(api):
    request_id = submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    name = api.call("GET", f"/api/v1/tasks/{task_id}", "anna").get_json()["name"]

    response = api.call("POST", f"/api/v1/tasks/{task_id}/unclaim", "anna")

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "task_not_claimed",
        "message": f"Task '{name}' of request-{request_id} is not claimed by "
        "anyone, so there is nothing to put back in the queue.",
        "fields": {},
    }


def test_colleague_in_scope_sees_a_task_another_holds(api):
    submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    api.call("POST", f"/api/v1/tasks/{task_id}/claim", "anna")

    shown = api.call("GET", f"/api/v1/tasks/{task_id}", "marc")

    assert shown.status_code == 200
    assert shown.get_json()["assignee"] == "anna"


NO_SUCH_TASK = "00000000-0000-0000-0000-000000000000"
TASK_CALLS = [
    ("GET", "", None),
    ("POST", "/claim", None),
    ("POST", "/unclaim", None),
    ("POST", "/complete", {"data": {"decision": "approve"}}),
]


@pytest.mark.parametrize("state", ["open", "claimed", "completed"])
def test_task_outside_ones_domains_answers_the_same_404_everywhere(api, state):
    submit(api)
    task_id = open_task(api, "anna", APPROVE_STEP)
    if state in ("claimed", "completed"):
        api.call("POST", f"/api/v1/tasks/{task_id}/claim", "anna")
    if state == "completed":
        done = api.call(
            "POST",
            f"/api/v1/tasks/{task_id}/complete",
            "anna",
            json={"data": {"decision": "approve"}},
        )
        assert done.status_code == 200

    answers = [
        api.call(method, f"/api/v1/tasks/{task_id}{suffix}", "john", json=body)
        for method, suffix, body in TASK_CALLS
    ]
    unknown = api.call("GET", f"/api/v1/tasks/{NO_SUCH_TASK}", "john")

    assert [a.status_code for a in answers] == [404] * len(TASK_CALLS)
    assert {error_of(a)["message"] for a in answers} == {
        f"Task {task_id} does not exist or is not yours to see; check the id "
        "against GET /api/v1/tasks."
    }
    assert error_of(unknown)["message"] == (
        f"Task {NO_SUCH_TASK} does not exist or is not yours to see; check the "
        "id against GET /api/v1/tasks."
    )


def test_cancel_reason_longer_than_a_comment_is_a_field_error(api):
    request_id = submit(api)
    path = f"/api/v1/requests/{request_id}/cancel"

    too_long = api.call("POST", path, "jdoe", json={"reason": "x" * 4001})
    longest = api.call("POST", path, "jdoe", json={"reason": "x" * 4000})

    assert too_long.status_code == 422
    assert error_of(too_long)["fields"] == {
        "reason": "The reason must be at most 4000 characters. Shorten it (this "
        "one has 4001)."
    }
    assert longest.status_code == 200, longest.get_json()
    assert longest.get_json()["status"] == "cancelled"


def test_instance_cancel_reason_is_capped_like_a_comment(api):
    request_id = submit(api)
    instance_id = api.call("GET", f"/api/v1/requests/{request_id}", "jdoe").get_json()[
        "instance_id"
    ]

    response = api.call(
        "POST",
        f"/api/v1/instances/{instance_id}/cancel",
        "admin",
        json={"reason": "y" * 20_000},
    )

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "validation_failed",
        "message": "reason: The reason must be at most 4000 characters. Shorten "
        "it (this one has 20000).",
        "fields": {
            "reason": "The reason must be at most 4000 characters. Shorten it "
            "(this one has 20000)."
        },
    }
