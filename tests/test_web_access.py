"""Every console route refuses whoever lacks the role or the scope, and every
form refuses a post without its CSRF token.

Refusals by role answer 403; refusals by scope answer 404, so that a person
outside a security domain cannot tell whether a request, task, instance,
user or token exists there.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers_web import (
    copy_database,
    make_app,
    open_task_id,
    post,
    sign_in,
    template_database,
)

from engine.identity import actor_for
from engine.provisioning import directory
from engine.provisioning import requests as provisioning

CONSOLE_BLUEPRINTS = ("selfservice", "inbox", "admin", "auth_pages")


@pytest.fixture
def world(tmp_path, tmp_path_factory):
    """The demo organisation with one pending hardware request of jdoe (Paris),
    plus an administrator and a token administrator of acme/americas only."""
    database, settings = copy_database(template_database(tmp_path_factory), tmp_path)
    with database.write() as session:
        for username, role in (
            ("amadmin", "administrator"),
            ("amtadmin", "token_administrator"),
        ):
            directory.create_user(
                session,
                username=username,
                display_name=username,
                email=f"{username}@example.com",
                domain_path="acme/americas",
                roles=[role],
                actor="system",
            )
        request = provisioning.submit_request(
            session,
            actor=actor_for(session, "jdoe"),
            request_type="new_token",
            form={
                "token_class": "hardware",
                "token_model": "SID700",
                "shipping_address": "1 Rue de la Paix, Paris",
                "justification": "New in the Paris office.",
            },
            settings=settings,
        )
        request_id, instance_id = request.id, request.instance_id
    app = make_app(database, settings)
    yield SimpleNamespace(
        app=app,
        database=database,
        settings=settings,
        request=request_id,
        instance=instance_id,
        task=open_task_id(database, request_id),
        serial="100001",
        own_serial="100101",
    )
    database.dispose()


def client_as(world, username: str | None):
    client = world.app.test_client()
    if username:
        sign_in(client, world.database, username)
    return client


# (method, path, user, status): who is refused where, and how.
REFUSALS = [
    # self-service: scope by requester and owner
    ("GET", "/requests/{request}", "ebrown", 404),
    ("POST", "/requests/{request}/cancel", "ebrown", 404),
    ("POST", "/requests/{request}/cancel", "hbernard", 403),
    ("GET", "/requests/new/new_account", "jdoe", 404),
    ("POST", "/requests/new/new_account", "jdoe", 404),
    ("POST", "/tokens/{own_serial}/received", "ebrown", 404),
    ("POST", "/tokens/{own_serial}/emergency", "ebrown", 404),
    ("POST", "/tokens/{own_serial}/emergency/end", "ebrown", 404),
    ("GET", "/tokens/{own_serial}/enable", "ebrown", 404),
    ("POST", "/tokens/{own_serial}/enable", "ebrown", 404),
    ("POST", "/activate/not-a-link", "jdoe", 404),
    # the inbox: role, then scope
    ("GET", "/inbox", "jdoe", 403),
    ("GET", "/tasks/{task}", "tmuller", 403),
    ("GET", "/tasks/{task}", "jsmith", 404),
    ("POST", "/tasks/{task}", "tmuller", 403),
    ("POST", "/tasks/{task}", "jsmith", 404),
    ("POST", "/tasks/{task}/claim", "tmuller", 403),
    ("POST", "/tasks/{task}/claim", "jsmith", 404),
    ("POST", "/tasks/{task}/unclaim", "tmuller", 403),
    ("POST", "/tasks/{task}/unclaim", "jsmith", 404),
    ("POST", "/tasks/{task}/assign", "tmuller", 403),
    ("POST", "/tasks/{task}/assign", "jsmith", 404),
    # administration: role
    ("GET", "/admin/deployments", "aschmidt", 403),
    ("POST", "/admin/deployments", "aschmidt", 403),
    ("GET", "/admin/deployments/1", "tadmin", 403),
    ("GET", "/admin/definitions/new_token", "jdoe", 403),
    ("GET", "/admin/modeler", "lrossi", 403),
    ("GET", "/admin/modeler/process/new_token", "tadmin", 403),
    ("POST", "/admin/modeler/process/new_token", "tadmin", 403),
    ("GET", "/admin/modeler/decision/workflow_policy", "aschmidt", 403),
    ("POST", "/admin/modeler/decision/workflow_policy", "aschmidt", 403),
    ("GET", "/admin/modeler/new", "jdoe", 403),
    ("POST", "/admin/modeler/new", "jdoe", 403),
    ("GET", "/admin/instances", "aschmidt", 403),
    ("GET", "/admin/instances/{instance}", "aschmidt", 403),
    ("POST", "/admin/instances/{instance}/cancel", "aschmidt", 403),
    ("POST", "/admin/instances/{instance}/retry", "aschmidt", 403),
    ("GET", "/admin/users", "tadmin", 403),
    ("POST", "/admin/users", "tadmin", 403),
    ("GET", "/admin/users/jdoe", "aschmidt", 403),
    ("POST", "/admin/users/jdoe/grants", "aschmidt", 403),
    ("POST", "/admin/users/jdoe/grants/revoke", "aschmidt", 403),
    ("POST", "/admin/users/jdoe/password", "aschmidt", 403),
    ("POST", "/admin/users/jdoe/active", "aschmidt", 403),
    ("GET", "/admin/domains", "tadmin", 403),
    ("POST", "/admin/domains", "tadmin", 403),
    ("GET", "/admin/tokens", "lrossi", 403),
    ("POST", "/admin/tokens", "aschmidt", 403),
    ("GET", "/admin/tokens/{serial}", "jdoe", 403),
    ("POST", "/admin/tokens/{serial}/disable", "lrossi", 403),
    ("POST", "/admin/tokens/{serial}/new-activation-link", "lrossi", 403),
    ("GET", "/admin/audit", "tadmin", 403),
    ("GET", "/admin/reports", "aschmidt", 403),
    # administration: scope
    ("GET", "/admin/instances/{instance}", "amadmin", 404),
    ("POST", "/admin/instances/{instance}/cancel", "amadmin", 404),
    ("POST", "/admin/instances/{instance}/retry", "amadmin", 404),
    ("GET", "/admin/users/jdoe", "amadmin", 404),
    ("POST", "/admin/users/jdoe/grants", "amadmin", 404),
    ("POST", "/admin/users/ebrown/grants", "amadmin", 403),
    ("POST", "/admin/users/jdoe/grants/revoke", "amadmin", 404),
    ("POST", "/admin/users/jdoe/password", "amadmin", 404),
    ("POST", "/admin/users/jdoe/active", "amadmin", 404),
    ("POST", "/admin/users", "amadmin", 403),
    ("POST", "/admin/domains", "amadmin", 403),
    ("GET", "/admin/tokens/{serial}", "amtadmin", 404),
    ("POST", "/admin/tokens/{serial}/disable", "amtadmin", 404),
    ("POST", "/admin/tokens/{serial}/new-activation-link", "amtadmin", 404),
]

FORM_DATA = {
    "/admin/users/jdoe/grants": {
        "role": "request_approver",
        "domain_path": "acme/emea",
    },
    "/admin/users/jdoe/grants/revoke": {"role": "x", "domain_path": "acme/emea"},
    "/admin/users": {
        "username": "newbie",
        "display_name": "New Bie",
        "email": "newbie@example.com",
        "domain_path": "acme/emea",
    },
    "/admin/domains": {"path": "acme/emea/berlin"},
    "/admin/instances/{instance}/cancel": {"reason": "test"},
    "/tasks/{task}": {"decision": "approve"},
    "/tasks/{task}/assign": {"assignee": "aschmidt"},
    "/admin/users/jdoe/password": {"password": "a-long-password"},
}


@pytest.mark.parametrize(("method", "path", "user", "status"), REFUSALS)
def test_route_refuses_user_without_role_or_scope(world, method, path, user, status):
    client = client_as(world, user)
    url = path.format(**vars(world))
    if method == "GET":
        response = client.get(url)
    else:
        response = post(client, url, FORM_DATA.get(path, {}))

    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    if status == 403:
        assert "You may not do this" in body
    else:
        assert "Not found" in body


def test_refusal_by_scope_names_nothing_of_the_hidden_request(world):
    client = client_as(world, "jsmith")

    body = client.get(f"/tasks/{world.task}").get_data(as_text=True)

    assert (
        f"Task {world.task} does not exist or is outside your security domains." in body
    )
    assert "jdoe" not in body
    assert "Rue de la Paix" not in body


def test_every_console_route_is_in_the_refusal_table_or_open_to_all_users(world):
    covered = {path.split("?")[0] for _, path, _, _ in REFUSALS}
    open_to_every_user = {
        "/",
        "/login",
        "/logout",
        "/account-request",
        "/requests",
        "/requests/new",
        "/tokens",
        "/activate/<link>",
        "/requests/new/<request_type>",
    }
    missing = []
    for rule in world.app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in CONSOLE_BLUEPRINTS:
            continue
        if rule.rule in open_to_every_user:
            continue
        shape = (
            rule.rule.replace("<int:request_id>", "{request}")
            .replace("<task_id>", "{task}")
            .replace("<int:instance_id>", "{instance}")
            .replace("<int:deployment_id>", "1")
            .replace("<key>", "new_token")
            .replace("<username>", "jdoe")
        )
        candidates = {
            shape,
            shape.replace("<serial>", "{serial}"),
            shape.replace("<serial>", "{own_serial}"),
            shape.replace("<serial>/<action>", "{serial}/disable"),
            shape.replace("new_token", "workflow_policy"),
        }
        if not candidates & covered:
            missing.append(rule.rule)
    assert missing == []


GET_PAGES = [
    "/",
    "/requests",
    "/requests/new",
    "/requests/new/new_token",
    "/tokens",
    "/activate/some-link",
    "/inbox",
    "/tasks/{task}",
    "/requests/{request}",
    "/admin/deployments",
    "/admin/instances",
    "/admin/users",
    "/admin/tokens",
    "/admin/audit",
    "/admin/reports",
]


@pytest.mark.parametrize("path", GET_PAGES)
def test_pages_send_anonymous_visitors_to_sign_in(world, path):
    response = world.app.test_client().get(path.format(**vars(world)))

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


# (path, user allowed to post it): a post without the CSRF token is refused
# before anything happens.
CSRF_FORMS = [
    ("/login", None),
    ("/logout", "jdoe"),
    ("/account-request", None),
    ("/requests/new/new_token", "jdoe"),
    ("/requests/{request}/cancel", "jdoe"),
    ("/tokens/{own_serial}/received", "jdoe"),
    ("/tokens/{own_serial}/emergency", "jdoe"),
    ("/tokens/{own_serial}/emergency/end", "jdoe"),
    ("/tokens/{own_serial}/enable", "jdoe"),
    ("/activate/some-link", "jdoe"),
    ("/tasks/{task}", "hbernard"),
    ("/tasks/{task}/claim", "hbernard"),
    ("/tasks/{task}/unclaim", "hbernard"),
    ("/tasks/{task}/assign", "hbernard"),
    ("/admin/deployments", "admin"),
    ("/admin/modeler/process/new_token", "admin"),
    ("/admin/modeler/decision/workflow_policy", "admin"),
    ("/admin/modeler/new", "admin"),
    ("/admin/instances/{instance}/cancel", "admin"),
    ("/admin/instances/{instance}/retry", "admin"),
    ("/admin/users", "admin"),
    ("/admin/users/jdoe/grants", "admin"),
    ("/admin/users/jdoe/grants/revoke", "admin"),
    ("/admin/users/jdoe/password", "admin"),
    ("/admin/users/jdoe/active", "admin"),
    ("/admin/domains", "admin"),
    ("/admin/tokens", "tadmin"),
    ("/admin/tokens/{serial}/disable", "tadmin"),
    ("/admin/tokens/{serial}/new-activation-link", "tadmin"),
]


@pytest.mark.parametrize(("path", "user"), CSRF_FORMS)
def test_form_without_csrf_token_is_refused(world, path, user):
    client = client_as(world, user)
    data = dict(FORM_DATA.get(path, {}))

    response = client.post(path.format(**vars(world)), data=data)

    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "The form was sent without a valid security token" in body


def test_every_post_route_is_in_the_csrf_table(world):
    covered = {p for p, _ in CSRF_FORMS}
    posted = set()
    for rule in world.app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in CONSOLE_BLUEPRINTS and "POST" in rule.methods:
            posted.add(rule.endpoint)
    endpoints = set()
    with world.app.test_request_context():
        adapter = world.app.url_map.bind("localhost")
        for path, _ in CSRF_FORMS:
            endpoint, _ = adapter.match(path.format(**vars(world)), method="POST")
            endpoints.add(endpoint)
    assert posted - endpoints == set()
    assert len(covered) == len(CSRF_FORMS)
