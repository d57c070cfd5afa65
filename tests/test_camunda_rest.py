"""The Camunda 7 REST subset, called exactly as Camunda Modeler calls it.

The modeler's deployment plugin posts a browser FormData: text fields
``deployment-name``, ``deployment-source`` ("Camunda Modeler"),
``deploy-changed-only`` (older releases) or ``enable-duplicate-filtering``
(newer ones), ``tenant-id`` when one is set, and one file part per diagram
named by its file name with type text/xml; it asks for JSON and sends HTTP
Basic or a bearer token. Its start button posts JSON ``{businessKey,
variables}`` to ``/process-definition/{id}/start`` with the id from the
deployment's answer.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from helpers_api import Api, make_api

from engine.provisioning import directory

DATA = Path(__file__).parent / "data"
POLICY = Path(__file__).parent.parent / "bpmn" / "workflow_policy.dmn"
PASSWORD = "modeler password 1"
BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


@pytest.fixture
def api(database, settings) -> Api:
    api = make_api(database, settings)
    with database.write() as session:
        for username in ("admin", "emma", "anna"):
            directory.set_password(session, username, PASSWORD, actor="system")
    return api


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}", "Accept": "application/json"}


def modeler_form(
    filename: str,
    *,
    name: str = "hello",
    tenant: str | None = None,
    newer=False,
    content: bytes | None = None,
) -> tuple[bytes, str]:
    """Build the multipart body the modeler's FormData produces, byte for byte.

    The file is read from tests/data unless ``content`` is given.
    """
    fields = [("deployment-name", name), ("deployment-source", "Camunda Modeler")]
    fields.append(
        ("enable-duplicate-filtering", "true")
        if newer
        else ("deploy-changed-only", "true")
    )
    if tenant:
        fields.append(("tenant-id", tenant))
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
        f"{value}\r\n".encode()
        for key, value in fields
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{filename}"; '
        f'filename="{filename}"\r\nContent-Type: text/xml\r\n\r\n'.encode()
        + (content if content is not None else (DATA / filename).read_bytes())
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def deploy(api: Api, filename: str, headers: dict[str, str], **kwargs):
    body, content_type = modeler_form(filename, **kwargs)
    return api.client.post(
        "/engine-rest/deployment/create",
        data=body,
        content_type=content_type,
        headers=headers,
    )


def test_version_and_connection_check_answer_as_camunda(api):
    version = api.client.get("/engine-rest/version")
    check = api.client.get(
        "/engine-rest/deployment?maxResults=0", headers=basic("admin")
    )

    assert version.status_code == 200
    assert re.fullmatch(r"7\.\d+\.\d+", version.get_json()["version"])
    assert check.status_code == 200
    assert check.get_json() == []


@pytest.mark.parametrize("password", ["wrong password", ""])
def test_connection_check_with_wrong_credentials_is_401(api, password):
    response = api.client.get(
        "/engine-rest/deployment?maxResults=0", headers=basic("admin", password)
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="engine-rest"'
    assert response.get_json() == {
        "type": "AuthenticationException",
        "message": "The user name or password is wrong.",
        "code": 0,
    }


def test_connection_check_without_credentials_is_401(api):
    response = api.client.get("/engine-rest/deployment?maxResults=0")

    assert response.status_code == 401
    assert response.get_json()["type"] == "AuthenticationException"


@pytest.mark.parametrize("newer", [False, True], ids=["modeler-4", "modeler-5"])
def test_modeler_deploy_answers_camunda_shape(api, newer):
    response = deploy(api, "camunda_hello.bpmn", basic("admin"), newer=newer)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "hello"
    assert body["source"] == "Camunda Modeler"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", body["deploymentTime"]
    )
    [(definition_id, definition)] = body["deployedProcessDefinitions"].items()
    assert re.fullmatch(r"camunda_hello:1:\d+", definition_id)
    assert definition["id"] == definition_id
    assert definition["key"] == "camunda_hello"
    assert definition["version"] == 1
    assert definition["name"] == "Hello from the modeler"
    assert definition["resource"] == "camunda_hello.bpmn"
    assert definition["deploymentId"] == body["id"]
    assert body["deployedDecisionDefinitions"] is None


def test_redeploying_unchanged_diagram_names_the_current_definition(api):
    first = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    again = deploy(api, "camunda_hello.bpmn", basic("admin"), tenant="t1")

    assert again.status_code == 200
    assert again.get_json()["id"] == first["id"]
    assert (
        again.get_json()["deployedProcessDefinitions"].keys()
        == first["deployedProcessDefinitions"].keys()
    )


def test_broken_diagram_answers_camunda_parse_exception_with_our_message(api):
    response = deploy(api, "camunda_broken.bpmn", basic("admin"))

    assert response.status_code == 400
    body = response.get_json()
    assert body["type"] == "ParseException"
    # The modeler shows the message as a diagram error when it has this prefix.
    assert body["message"].startswith("ENGINE-09005 Could not parse BPMN process.")
    assert "line 9, element 'f_yes': the condition is refused" in body["message"]
    assert body["details"] == {
        "camunda_broken.bpmn": {
            "errors": [
                {
                    "message": "the condition is refused: Line 1: syntax error: "
                    "invalid syntax; fix the condition in the modeler and deploy "
                    "again.",
                    "line": 9,
                    "column": 0,
                    "mainElementId": "f_yes",
                    "elementIds": ["f_yes"],
                }
            ],
            "warnings": [],
        }
    }


def test_only_administrators_may_deploy(api):
    response = deploy(api, "camunda_hello.bpmn", basic("anna"))

    assert response.status_code == 403
    assert response.get_json() == {
        "type": "AuthorizationException",
        "message": "This needs the administrator role.",
        "code": 0,
    }


def test_administrator_of_one_branch_may_not_deploy(api):
    response = deploy(api, "camunda_hello.bpmn", basic("emma"))

    assert response.status_code == 403
    assert response.get_json()["message"].startswith(
        "Deploying changes process models for every security domain"
    )


def test_bearer_token_deploys_like_basic(api):
    response = deploy(api, "camunda_hello.bpmn", api.headers("admin"))

    assert response.status_code == 200


def test_start_button_starts_the_deployed_definition(api):
    deployed = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    definition_id = next(iter(deployed["deployedProcessDefinitions"]))

    started = api.client.post(
        f"/engine-rest/process-definition/{definition_id}/start",
        json={
            "businessKey": "from-modeler",
            "variables": {
                "requester": {"value": "jdoe", "type": "String"},
                "urgent": {"value": True, "type": "Boolean"},
                "extra": {"value": '{"a": 1}', "type": "Json"},
            },
        },
        headers=basic("admin"),
    )

    assert started.status_code == 200, started.get_json()
    body = started.get_json()
    assert body["definitionId"] == definition_id
    assert body["businessKey"] == "from-modeler"
    assert body["ended"] is False
    detail = api.call("GET", f"/api/v1/instances/{body['id']}", "admin").get_json()
    assert detail["data"]["extra"] == {"a": 1}
    assert detail["open_tasks"][0]["task_spec"] == "review"


def test_start_by_key_and_unknown_key(api):
    deploy(api, "camunda_hello.bpmn", basic("admin"))

    started = api.client.post(
        "/engine-rest/process-definition/key/camunda_hello/start",
        json={},
        headers=basic("admin"),
    )
    unknown = api.client.post(
        "/engine-rest/process-definition/key/nope/start",
        json={},
        headers=basic("admin"),
    )

    assert started.status_code == 200
    assert unknown.status_code == 404
    assert unknown.get_json()["message"] == (
        "No matching process definition with key: nope and no tenant-id"
    )


def test_start_with_a_badly_typed_variable_is_400(api):
    deploy(api, "camunda_hello.bpmn", basic("admin"))

    response = api.client.post(
        "/engine-rest/process-definition/key/camunda_hello/start",
        json={"variables": {"count": {"value": "many", "type": "Integer"}}},
        headers=basic("admin"),
    )

    assert response.status_code == 400
    assert response.get_json() == {
        "type": "InvalidRequestException",
        "message": "Cannot convert value 'many' of variable 'count' to type Integer.",
        "code": 0,
    }


def test_start_needs_an_administrator(api):
    deploy(api, "camunda_hello.bpmn", basic("admin"))

    response = api.client.post(
        "/engine-rest/process-definition/key/camunda_hello/start",
        json={},
        headers=basic("anna"),
    )

    assert response.status_code == 403
    assert response.get_json()["type"] == "AuthorizationException"


def test_basic_credentials_do_not_work_on_the_v1_api(api):
    response = api.client.get("/api/v1/me", headers=basic("admin"))

    assert response.status_code == 401
    assert (
        "HTTP Basic works only under /engine-rest"
        in response.get_json()["error"]["message"]
    )


def test_connection_check_needs_only_credentials_but_listing_needs_an_admin(api):
    check = api.client.get(
        "/engine-rest/deployment?maxResults=0", headers=basic("anna")
    )
    listing = api.client.get(
        "/engine-rest/deployment?maxResults=2", headers=basic("anna")
    )
    admin = api.client.get(
        "/engine-rest/deployment?maxResults=2", headers=basic("admin")
    )

    assert check.status_code == 200
    assert check.get_json() == []
    assert listing.status_code == 403
    assert listing.get_json() == {
        "type": "AuthorizationException",
        "message": "This needs the administrator role.",
        "code": 0,
    }
    assert admin.status_code == 200
    assert len(admin.get_json()) == 1  # the organisation's one deployment of bpmn/


def test_deploying_a_changed_decision_lists_it_in_camunda_shape(api):
    changed = POLICY.read_bytes().replace(
        b'name="Workflow policy"', b'name="Workflow policy, revised"'
    )

    response = deploy(
        api, "workflow_policy.dmn", basic("admin"), name="policy", content=changed
    )

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["deployedProcessDefinitions"] == {}
    [(decision_id, decision)] = body["deployedDecisionDefinitions"].items()
    assert re.fullmatch(r"workflow_policy:2:\d+", decision_id)
    assert decision == {
        "id": decision_id,
        "key": "workflow_policy",
        "category": "http://camunda.org/schema/1.0/dmn",
        "name": "Workflow policy, revised",
        "version": 2,
        "resource": "workflow_policy.dmn",
        "deploymentId": body["id"],
        "decisionRequirementsDefinitionId": None,
        "decisionRequirementsDefinitionKey": None,
        "tenantId": None,
        "versionTag": None,
        "historyTimeToLive": None,
    }


def test_redeploying_an_unchanged_decision_names_the_current_one(api):
    response = deploy(
        api, "workflow_policy.dmn", basic("admin"), content=POLICY.read_bytes()
    )

    decisions = response.get_json()["deployedDecisionDefinitions"]
    assert [d["version"] for d in decisions.values()] == [1]
    assert [d["deploymentId"] for d in decisions.values()] == [
        response.get_json()["id"]
    ]


def _local(href: str) -> str:
    assert href.startswith("http://localhost/engine-rest/"), href
    return href.removeprefix("http://localhost")


def test_links_of_deployment_and_start_lead_to_them(api):
    deployed = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    definition_id = next(iter(deployed["deployedProcessDefinitions"]))
    started = api.client.post(
        f"/engine-rest/process-definition/{definition_id}/start",
        json={"businessKey": "linked"},
        headers=basic("admin"),
    ).get_json()

    deployment = api.client.get(
        _local(deployed["links"][0]["href"]), headers=basic("admin")
    )
    instance = api.client.get(
        _local(started["links"][0]["href"]), headers=basic("admin")
    )

    assert deployment.status_code == 200
    assert deployment.get_json() == {
        k: deployed[k]
        for k in ("links", "id", "name", "source", "deploymentTime", "tenantId")
    }
    assert instance.status_code == 200
    assert instance.get_json() == started


def test_unknown_deployment_and_instance_answer_404(api):
    deployment = api.client.get(
        "/engine-rest/deployment/999999", headers=basic("admin")
    )
    instance = api.client.get(
        "/engine-rest/process-instance/999999", headers=basic("admin")
    )

    assert deployment.status_code == 404
    assert deployment.get_json()["message"] == (
        "Deployment with id '999999' does not exist"
    )
    assert instance.status_code == 404
    assert instance.get_json()["message"] == (
        "Process instance with id 999999 does not exist in the security domains "
        "you administer"
    )


def test_instance_outside_ones_domains_answers_404(api):
    deployed = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    definition_id = next(iter(deployed["deployedProcessDefinitions"]))
    started = api.client.post(
        f"/engine-rest/process-definition/{definition_id}/start",
        json={},
        headers=basic("admin"),
    ).get_json()

    # admin's process runs in acme; emma administers acme/emea only.
    response = api.client.get(
        f"/engine-rest/process-instance/{started['id']}", headers=basic("emma")
    )

    assert response.status_code == 404


def test_start_by_id_of_an_unknown_version_is_404(api):
    deployed = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    key, _, number = next(iter(deployed["deployedProcessDefinitions"])).split(":")

    response = api.client.post(
        f"/engine-rest/process-definition/{key}:7:{number}/start",
        json={},
        headers=basic("admin"),
    )

    assert response.status_code == 404
    assert response.get_json()["message"] == (
        f"No matching definition with id {key}:7:{number}; ids look like "
        "'key:version:number', as in the answer of deployment/create "
        "(GET /api/v1/process-definitions/{key}/versions lists them)."
    )


def test_start_by_id_of_an_older_version_names_the_latest(api):
    first = deploy(api, "camunda_hello.bpmn", basic("admin")).get_json()
    old_id = next(iter(first["deployedProcessDefinitions"]))
    renamed = (
        (DATA / "camunda_hello.bpmn")
        .read_bytes()
        .replace(b'name="Hello from the modeler"', b'name="Hello again"')
    )
    second = deploy(api, "camunda_hello.bpmn", basic("admin"), content=renamed)
    new_id = next(iter(second.get_json()["deployedProcessDefinitions"]))

    response = api.client.post(
        f"/engine-rest/process-definition/{old_id}/start",
        json={},
        headers=basic("admin"),
    )

    assert response.status_code == 400
    assert response.get_json()["message"] == (
        "Process 'camunda_hello' version 1 is not the latest; only the latest "
        f"version can be started, which is version 2 with id {new_id}. Deploy the "
        "diagram again to get its current id."
    )


def test_start_with_malformed_json_says_where(api):
    deploy(api, "camunda_hello.bpmn", basic("admin"))

    response = api.client.post(
        "/engine-rest/process-definition/key/camunda_hello/start",
        data="{bad",
        content_type="application/json",
        headers=basic("admin"),
    )

    assert response.status_code == 400
    assert response.get_json() == {
        "type": "InvalidRequestException",
        "message": "The body is not valid JSON: Expecting property name enclosed "
        "in double quotes at line 1, column 2 (character 1). Check the quoting "
        "and commas there.",
        "code": 0,
    }


def test_wrong_method_keeps_the_allow_header(api):
    response = api.client.delete("/engine-rest/deployment", headers=basic("admin"))

    assert response.status_code == 405
    assert response.get_json()["type"] == "InvalidRequestException"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.parametrize(
    "path",
    [
        "/engine-rest/deployment/%C2%B2",
        "/engine-rest/deployment/99999999999999999999",
        "/engine-rest/process-instance/%C2%B2",
        "/engine-rest/process-instance/-1",
    ],
)
def test_ids_that_cannot_be_row_numbers_answer_404(api, path):
    response = api.client.get(path, headers=basic("admin"))

    assert response.status_code == 404
    assert response.get_json()["type"] == "RestException"


@pytest.mark.parametrize(
    "definition", ["camunda_hello:%C2%B2:1", "camunda_hello:1", "camunda_hello:1:2:3"]
)
def test_malformed_definition_id_answers_404(api, definition):
    response = api.client.post(
        f"/engine-rest/process-definition/{definition}/start",
        json={},
        headers=basic("admin"),
    )

    assert response.status_code == 404
    assert response.get_json()["message"].startswith("No matching definition with id")


def test_start_by_id_checks_the_role_before_the_id(api):
    response = api.client.post(
        "/engine-rest/process-definition/nothing:1:1/start",
        json={},
        headers=basic("anna"),
    )

    assert response.status_code == 403
