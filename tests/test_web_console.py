"""The console's pages and actions through the Flask test client.

The product's diagrams and the demo organisation are loaded; messages a
person sees are compared with what the engine says for the same input.
"""

from __future__ import annotations

import io
import re

import pytest
from helpers_web import (
    DATA,
    PASSWORD,
    client_as,
    csrf_token,
    make_app,
    open_task_id,
    post,
)
from markupsafe import escape

from engine import instances
from engine.errors import ValidationFailed
from engine.identity import actor_for
from engine.models import HumanTask
from engine.provisioning import inventory
from engine.provisioning import requests as provisioning

HARDWARE_FORM = {
    "token_class": "hardware",
    "token_model": "SID700",
    "shipping_address": "1 Rue de la Paix, Paris",
    "justification": "New in the Paris office.",
}


def submit(env, username="jdoe", form=None, request_type="new_token") -> int:
    with env.database.write() as session:
        created = provisioning.submit_request(
            session,
            actor=actor_for(session, username),
            request_type=request_type,
            form=form or HARDWARE_FORM,
            settings=env.settings,
        )
        return created.id


def approve(env, request_id, username, **kwargs):
    with env.database.write() as session:
        provisioning.decide(
            session,
            actor_for(session, username),
            open_task_id(env.database, request_id),
            decision="approve",
            **kwargs,
        )


def text(response) -> str:
    return response.get_data(as_text=True)


# -- signing in -------------------------------------------------------------


def login(client, username, password, **extra):
    token = csrf_token(client, "/login")
    data = {"username": username, "password": password, "csrf_token": token}
    return client.post("/login", data={**data, **extra})


def test_sign_in_with_the_right_password_opens_the_start_page(env):
    client = env.app.test_client()

    response = login(client, "jdoe", PASSWORD)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "Hello, Jane" in text(client.get("/"))


def test_sign_in_with_a_wrong_password_says_what_to_check(env):
    response = login(env.app.test_client(), "jdoe", "wrong-password")

    assert response.status_code == 401
    assert (
        "The user name or password is wrong, or the account is disabled. Check "
        "both and try again." in text(response)
    )


def test_sign_in_goes_back_to_the_page_asked_for_but_never_to_another_site(env):
    client = env.app.test_client()
    assert login(client, "jdoe", PASSWORD, next="/tokens").headers["Location"] == (
        "/tokens"
    )
    client = env.app.test_client()
    response = login(client, "jdoe", PASSWORD, next="//evil.example/x")
    assert response.headers["Location"] == "/"


def test_sign_in_attempts_are_limited_per_user_name(env):
    # The limiter is one object for every app of the process: switch it on
    # explicitly, as other tests' apps may have switched it off.
    app = make_app(env.database, env.settings, RATELIMIT_ENABLED=True)
    client = app.test_client()
    for _ in range(10):
        assert login(client, "jdoe", "wrong-password").status_code == 401

    response = login(client, "jdoe", PASSWORD)

    assert response.status_code == 429
    body = text(response)
    assert "Too many attempts" in body
    assert "Wait a minute before trying again." in body


def test_sign_out_ends_the_session(env):
    client = client_as(env, "jdoe")

    response = post(client, "/logout")

    assert response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


# -- self-service -----------------------------------------------------------


def test_request_form_shows_each_engine_message_next_to_its_field(env):
    with env.database.read() as session:
        with pytest.raises(ValidationFailed) as refused:
            provisioning.submit_request(
                session,
                actor=actor_for(session, "jdoe"),
                request_type="new_token",
                form={"token_class": "", "token_model": "", "justification": ""},
                settings=env.settings,
            )
    client = client_as(env, "jdoe")

    response = post(client, "/requests/new/new_token", {"justification": ""})

    assert response.status_code == 422
    body = text(response)
    for field, message in refused.value.field_errors.items():
        assert re.search(
            rf'id="field-{field}-err">{re.escape(escape(message))}<', body
        ), field


def test_submitted_request_opens_its_page_with_status_and_holder(env):
    client = client_as(env, "jdoe")

    response = post(client, "/requests/new/new_token", HARDWARE_FORM)

    assert response.status_code == 302
    page = text(client.get(response.headers["Location"]))
    assert "Pending" in page
    assert "Approve request" in page
    assert "request approvers of acme/emea/paris" in page
    assert 'id="diagram-data"' in page and "approve_request" in page


def test_a_second_identical_request_is_refused_with_the_engine_message(env):
    submit(env)
    client = client_as(env, "jdoe")

    response = post(client, "/requests/new/new_token", HARDWARE_FORM)

    assert response.status_code == 409
    assert "pending" in text(response)


def test_requester_cancels_a_pending_request(env):
    request_id = submit(env)
    client = client_as(env, "jdoe")

    response = post(client, f"/requests/{request_id}/cancel", {"reason": "Not needed"})

    assert response.status_code == 302
    page = text(client.get(f"/requests/{request_id}"))
    assert "Cancelled" in page
    assert "Cancel this request" not in page


def test_requester_sees_the_comment_but_never_the_internal_note(env):
    request_id = submit(env)
    approve(env, request_id, "hbernard", comment="Welcome!", note="Checked with HR")

    requester_page = text(client_as(env, "jdoe").get(f"/requests/{request_id}"))
    staff_page = text(client_as(env, "aschmidt").get(f"/requests/{request_id}"))

    assert "Welcome!" in requester_page
    assert "Checked with HR" not in requester_page
    assert "Checked with HR" in staff_page


def test_my_requests_lists_only_mine_with_status(env):
    mine = submit(env)
    submit(env, "cmartin")

    response = client_as(env, "jdoe").get("/requests")
    page = text(response)
    assert response.status_code == 200, page[-3000:]

    assert f"/requests/{mine}" in page
    assert page.count('href="/requests/') - page.count('href="/requests/new') == 1


def test_received_hardware_token_is_enabled_by_its_owner(env):
    client = client_as(env, "cmartin")

    response = post(client, "/tokens/100102/received")

    assert response.status_code == 302
    with env.database.read() as session:
        assert inventory.find_token(session, "100102").state == "active"


def test_emergency_access_shows_a_temporary_code_once(env):
    client = client_as(env, "jdoe")

    response = post(client, "/tokens/100101/emergency")

    assert response.status_code == 200
    code = re.search(r'class="big-code"[^>]*>([^<]+)<', text(response)).group(1)
    with env.database.read() as session:
        from engine.provisioning import software

        assert software.check_emergency_code(session, "100101", code.strip())
    assert code not in text(client.get("/tokens"))


def _issue_software_token(env, owner="jdoe") -> str:
    """Issue a software token to ``owner``; return the path of its link."""
    from engine.provisioning import software

    with env.database.write() as session:
        _, url = software.issue_software_token(
            session,
            owner=owner,
            model_code="AUTHAPP",
            request_id=None,
            settings=env.settings,
        )
    return "/activate/" + url.rsplit("/", 1)[1]


def test_activation_link_opened_by_someone_else_stays_unspent(env):
    path = _issue_software_token(env)

    refused = post(client_as(env, "cmartin"), path)
    owner_page = post(client_as(env, "jdoe"), path)

    assert refused.status_code == 403
    assert (
        "This activation link is for a software token of another user, so "
        "cmartin may not open it; it stays unused for its owner."
    ) in text(refused)
    assert "otpauth://" not in text(refused)
    assert owner_page.status_code == 200
    assert "otpauth://totp/" in text(owner_page)
    assert post(client_as(env, "jdoe"), path).status_code == 404


def test_activation_intro_page_offers_the_button_for_a_fresh_link(env):
    path = _issue_software_token(env)
    client = client_as(env, "jdoe")

    intro = client.get(path)

    assert intro.status_code == 200
    assert "Show my QR code" in text(intro)
    assert "otpauth://" not in text(intro)
    assert post(client, path).status_code == 200


def test_activation_intro_page_says_at_once_that_a_used_link_is_spent(env):
    from engine.provisioning import software

    path = _issue_software_token(env)
    client = client_as(env, "jdoe")
    assert post(client, path).status_code == 200

    intro = client.get(path)

    assert intro.status_code == 404
    assert str(escape(software.INVALID_LINK_MESSAGE)) in text(intro)
    assert "Show my QR code" not in text(intro)


def test_activation_intro_page_says_at_once_that_a_link_expired(env):
    from datetime import timedelta

    from engine.provisioning import software

    with env.database.write() as session:
        token, url = software.issue_software_token(
            session,
            owner="jdoe",
            model_code="AUTHAPP",
            request_id=None,
            settings=env.settings,
            lifetime=timedelta(seconds=-1),
        )
        expired = f"{token.activation_expires_at:%Y-%m-%d %H:%M}"
    path = "/activate/" + url.rsplit("/", 1)[1]

    intro = client_as(env, "jdoe").get(path)

    assert intro.status_code == 409
    assert f"This activation link expired on {expired} UTC." in text(intro)
    assert "Show my QR code" not in text(intro)


def test_activation_intro_page_of_someone_elses_link_leaves_it_unspent(env):
    path = _issue_software_token(env)

    intro = client_as(env, "cmartin").get(path)

    assert intro.status_code == 403
    assert "Show my QR code" not in text(intro)
    assert post(client_as(env, "jdoe"), path).status_code == 200


def test_wrong_first_code_is_shown_next_to_the_code_field(env):
    with env.database.write() as session:
        from engine.provisioning import software

        token, _ = software.issue_software_token(
            session,
            owner="jdoe",
            model_code="AUTHAPP",
            request_id=None,
            settings=env.settings,
        )
        serial = token.serial

    response = post(client_as(env, "jdoe"), f"/tokens/{serial}/enable", {"code": "1"})

    assert response.status_code == 422
    assert 'id="code-err"' in text(response)


def test_account_request_needs_no_sign_in(env):
    client = env.app.test_client()
    data = {
        "username": "newperson",
        "display_name": "New Person",
        "email": "new.person@example.com",
        "domain_path": "acme/emea",
        "justification": "I joined the EMEA team.",
    }

    data["csrf_token"] = csrf_token(client, "/account-request")
    response = client.post("/account-request", data=data)

    assert response.status_code == 200
    assert "is submitted" in text(response)


# -- the inbox --------------------------------------------------------------


def test_inbox_counts_queues_and_filters(env):
    request_id = submit(env)
    client = client_as(env, "hbernard")

    page = text(client.get("/inbox"))
    assert f"#{request_id}" in page
    assert re.search(r"Queue: Request approver <span class=\"count\">1</span>", page)
    assert re.search(r"Assigned to me <span class=\"count\">0</span>", page)

    assert f"#{request_id}" not in text(client.get("/inbox?type=group_membership"))
    assert f"#{request_id}" not in text(client.get("/inbox?domain=acme/americas"))
    assert f"#{request_id}" not in text(client.get("/inbox?age=7"))
    assert f"#{request_id}" in text(client.get("/inbox?domain=acme/emea&sort=due"))


def test_claim_and_unclaim_a_task(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)
    client = client_as(env, "hbernard")

    post(client, f"/tasks/{task_id}/claim")
    assert re.search(
        r"Assigned to me <span class=\"count\">1</span>", text(client.get("/inbox"))
    )
    post(client, f"/tasks/{task_id}/unclaim")

    with env.database.read() as session:
        assert session.get(HumanTask, task_id).assignee is None


def assign_error(response) -> str:
    match = re.search(r'<p class="error" id="assignee-err">([^<]*)</p>', text(response))
    assert match, text(response)[:3000]
    return match[1]


def test_assigning_to_someone_outside_the_scope_names_them_next_to_the_field(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)

    response = post(
        client_as(env, "hbernard"), f"/tasks/{task_id}/assign", {"assignee": "jsmith"}
    )

    assert response.status_code == 422
    assert assign_error(response) == escape(
        "jsmith does not hold the request_approver role for security domain "
        "'acme/emea/paris', so they cannot work this task. Assign it to someone "
        "in its queue."
    )
    assert '<details class="assign" open>' in text(response)


def test_assigning_to_an_unknown_user_is_a_field_error_not_a_404(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)

    response = post(
        client_as(env, "hbernard"), f"/tasks/{task_id}/assign", {"assignee": "nobody"}
    )

    assert response.status_code == 422
    assert assign_error(response) == escape(
        "No active user named 'nobody'; check the spelling or create the user first."
    )


def test_assigning_to_the_requester_says_separation_of_duties_keeps_them_off(env):
    request_id = submit(env, username="aschmidt")
    task_id = open_task_id(env.database, request_id)

    response = post(
        client_as(env, "mdubois"), f"/tasks/{task_id}/assign", {"assignee": "aschmidt"}
    )

    assert response.status_code == 422
    assert assign_error(response) == escape(
        f"aschmidt started request-{request_id}, so separation of duties keeps them "
        "from working its task 'Approve request'. Assign it to someone else."
    )
    assert "ask an administrator to grant you the role" not in text(response)


def test_assigning_to_a_previous_approver_says_a_different_person_must_approve(env):
    request_id = submit(env)
    approve(env, request_id, "hbernard")
    task_id = open_task_id(env.database, request_id)

    response = post(
        client_as(env, "aschmidt"), f"/tasks/{task_id}/assign", {"assignee": "hbernard"}
    )

    assert response.status_code == 422
    assert assign_error(response) == escape(
        f"hbernard already completed an earlier 'Approve request' step of "
        f"request-{request_id}; a different person must take this one. Assign it "
        "to someone else."
    )


def test_approval_with_a_bad_decision_shows_the_message_next_to_the_field(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)
    client = client_as(env, "hbernard")

    with env.database.read() as session:
        with pytest.raises(ValidationFailed) as refused:
            provisioning.decide(
                session, actor_for(session, "hbernard"), task_id, decision="maybe"
            )
    message = refused.value.field_errors["decision"]

    response = post(
        client, f"/tasks/{task_id}", {"decision": "maybe", "token_model": "SID700"}
    )

    assert response.status_code == 422
    assert f'<p class="error">{escape(message)}</p>' in text(response)


def test_second_approver_is_told_who_completed_the_task_first(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)
    first, second = client_as(env, "hbernard"), client_as(env, "aschmidt")
    second_token = csrf_token(second)

    assert post(first, f"/tasks/{task_id}", {"decision": "approve"}).status_code == 302
    response = second.post(
        f"/tasks/{task_id}", data={"decision": "approve", "csrf_token": second_token}
    )

    assert response.status_code == 409
    body = text(response)
    assert "already completed by hbernard at" in body
    with env.database.read() as session:
        completed = session.query(HumanTask).filter_by(completed_by="aschmidt").count()
    assert completed == 0


def test_defer_saves_the_comment_and_keeps_the_task_open(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)
    client = client_as(env, "hbernard")

    response = post(
        client, f"/tasks/{task_id}", {"_action": "defer", "comment": "Asking HR"}
    )

    assert response.headers["Location"] == f"/tasks/{task_id}"
    assert "Asking HR</textarea>" in text(client.get(f"/tasks/{task_id}"))
    assert open_task_id(env.database, request_id) == task_id


def test_distribution_offers_available_serials_of_the_requested_model(env):
    request_id = submit(env)
    approve(env, request_id, "hbernard")
    approve(env, request_id, "aschmidt")
    task_id = open_task_id(env.database, request_id)
    client = client_as(env, "lrossi")

    page = text(client.get(f"/tasks/{task_id}"))

    with env.database.read() as session:
        expected = [
            t.serial
            for t in inventory.available_serials(
                session,
                actor_for(session, "lrossi"),
                model_code="SID700",
                domain_path="acme/emea/paris",
            )
        ]
    assert expected
    for serial in expected:
        assert f'<option value="{serial}"' in page
    assert 'value="100021"' not in page  # an SID800 of the same stock

    response = post(
        client,
        f"/tasks/{task_id}",
        {
            "serial_number": expected[0],
            "shipping_address": "1 Rue de la Paix, Paris",
            "carrier": "dhl",
            "tracking_number": "T123",
        },
    )
    assert response.status_code == 302
    with env.database.read() as session:
        assert inventory.find_token(session, expected[0]).owner == "jdoe"


# -- administration ---------------------------------------------------------


def upload(client, files, action="deploy"):
    token = csrf_token(client, "/admin/deployments")
    data = {
        "csrf_token": token,
        "action": action,
        "files": [(io.BytesIO(content), name) for name, content in files],
    }
    return client.post(
        "/admin/deployments", data=data, content_type="multipart/form-data"
    )


def test_upload_report_names_file_line_and_element(env):
    content = (DATA / "web_bad_flow.bpmn").read_bytes()

    response = upload(client_as(env, "admin"), [("web_bad_flow.bpmn", content)])

    assert response.status_code == 422
    body = text(response)
    assert "Deployment refused: nothing was deployed" in body
    assert re.search(
        r"<td><code>web_bad_flow.bpmn</code></td><td>9</td><td><code>f_done</code>"
        r"</td><td>the condition is refused",
        body,
    )


def test_validate_only_stores_nothing_and_deploy_creates_the_version(env):
    content = (DATA / "web_script_fails.bpmn").read_bytes()
    client = client_as(env, "admin")

    checked = upload(client, [("web_script_fails.bpmn", content)], action="validate")
    assert "Valid: ready to deploy" in text(checked)
    assert (
        "web_script_fails"
        not in text(client.get("/admin/deployments")).split("Process definitions")[1]
    )

    deployed = upload(client, [("web_script_fails.bpmn", content)])
    assert "Deployed (deployment" in text(deployed)
    assert "/admin/definitions/web_script_fails" in text(deployed)


def test_definition_page_shows_what_changed_between_versions(env):
    content = (DATA.parent.parent / "bpmn" / "group_membership.bpmn").read_bytes()
    changed = content.replace(
        b'name="Approve request"', b'name="Approve the membership"'
    )
    client = client_as(env, "admin")
    upload(client, [("group_membership.bpmn", changed)])

    page = text(client.get("/admin/definitions/group_membership?from=1&to=2"))

    assert "version 2" in page
    assert escape("name 'Approve request' -> 'Approve the membership'") in page


def test_modeler_refuses_a_file_name_of_the_wrong_kind(env):
    client = client_as(env, "admin")

    response = post(
        client,
        "/admin/modeler/new",
        {"xml": "<x/>", "filename": "policy.dmn", "action": "validate"},
    )

    assert response.status_code == 422
    assert "the file name must end in .bpmn." in text(response)


def test_modeler_deploys_the_posted_xml_as_a_new_version(env):
    client = client_as(env, "admin")
    page = text(client.get("/admin/modeler/process/group_membership"))
    xml = re.search(
        r'<script type="application/json" id="modeler-data">(.*?)</script>', page, re.S
    ).group(1)
    import json

    source = json.loads(xml)["xml"].replace(
        'name="Approve request"', 'name="Approve membership"'
    )

    response = post(
        client,
        "/admin/modeler/process/group_membership",
        {"xml": source, "filename": "group_membership.bpmn", "action": "deploy"},
    )

    assert response.headers["Location"] == "/admin/definitions/group_membership"
    assert "version 2" in text(client.get(response.headers["Location"]))


def test_instance_with_an_incident_shows_the_error_and_can_be_retried(env):
    content = (DATA / "web_script_fails.bpmn").read_bytes()
    client = client_as(env, "admin")
    upload(client, [("web_script_fails.bpmn", content)])
    with env.database.write() as session:
        instance = instances.start_instance(
            session,
            "web_script_fails",
            actor=actor_for(session, "jdoe"),
            variables={"divisor": 0},
        )
        instance_id = instance.id

    page = text(client.get(f"/admin/instances/{instance_id}"))
    assert "Incident: the instance is stopped" in page
    assert "<code>divide</code> failed" in page

    response = post(client, f"/admin/instances/{instance_id}/retry")
    assert response.status_code == 302
    page = text(client.get(f"/admin/instances/{instance_id}"))
    assert "The step failed again" in page
    assert "attempt 2" in page


def test_instance_search_and_cancel(env):
    request_id = submit(env)
    client = client_as(env, "admin")
    with env.database.read() as session:
        from engine.provisioning.request_models import ProvisioningRequest

        instance_id = session.get(ProvisioningRequest, request_id).instance_id

    assert f"#{instance_id}" in text(
        client.get("/admin/instances?user=jdoe&status=running")
    )
    assert f"#{instance_id}<" not in text(client.get("/admin/instances?user=cmartin"))

    post(client, f"/admin/instances/{instance_id}/cancel", {"reason": "Duplicate"})

    page = text(client.get(f"/admin/instances/{instance_id}"))
    assert "Cancelled by admin: Duplicate" in page


def test_create_user_shows_the_directory_message_next_to_the_field(env):
    client = client_as(env, "admin")

    response = post(
        client,
        "/admin/users",
        {
            "username": "Bad Name",
            "display_name": "Bad",
            "email": "bad@example.com",
            "domain_path": "acme/emea",
        },
    )

    assert response.status_code == 422
    assert "is not a valid username" in text(response)


def test_create_user_then_grant_and_revoke_a_role(env):
    client = client_as(env, "admin")
    post(
        client,
        "/admin/users",
        {
            "username": "newbie",
            "display_name": "New Bie",
            "email": "newbie@example.com",
            "domain_path": "acme/emea",
        },
    )

    post(
        client,
        "/admin/users/newbie/grants",
        {"role": "request_approver", "domain_path": "acme/emea/paris"},
    )
    assert actor_for_db(env, "newbie").has_role("request_approver", "acme/emea/paris")

    post(
        client,
        "/admin/users/newbie/grants/revoke",
        {"role": "request_approver", "domain_path": "acme/emea/paris"},
    )
    assert not actor_for_db(env, "newbie").has_role("request_approver")


def actor_for_db(env, username):
    with env.database.read() as session:
        return actor_for(session, username)


def test_administrator_may_not_revoke_their_own_administrator_role(env):
    response = post(
        client_as(env, "admin"),
        "/admin/users/admin/grants/revoke",
        {"role": "administrator", "domain_path": "acme"},
    )

    assert response.status_code == 403
    assert "You may not revoke your own administrator role" in text(response)


def test_create_security_domain_needs_its_parent(env):
    client = client_as(env, "admin")

    refused = post(client, "/admin/domains", {"path": "acme/nowhere/x"})
    created = post(client, "/admin/domains", {"path": "acme/emea/berlin"})

    assert refused.status_code == 422
    assert escape("Security domain 'acme/nowhere' does not exist") in text(refused)
    assert created.status_code == 302
    assert "acme/emea/berlin" in text(client.get("/admin/domains"))


def import_csv(client, content: str, **extra):
    token = csrf_token(client, "/admin/tokens")
    data = {
        "csrf_token": token,
        "domain_path": "acme/emea",
        "file": (io.BytesIO(content.encode()), "tokens.csv"),
        **extra,
    }
    return client.post("/admin/tokens", data=data, content_type="multipart/form-data")


def test_token_import_reports_each_line(env):
    client = client_as(env, "tadmin")
    content = "serial,model,expiry\n900001,SID700,2031-01-31\n900002,NOPE,2031-01-31\n"

    refused = import_csv(client, content)
    assert refused.status_code == 422
    body = text(refused)
    assert "Import refused, nothing was imported" in body
    assert "900002" in body and "valid, not imported (file refused)" in body

    accepted = import_csv(client, content, skip_bad_rows="y")
    assert "Imported 1 token" in text(accepted)
    with env.database.read() as session:
        assert inventory.find_token(session, "900001") is not None
        assert inventory.find_token(session, "900002") is None


def test_token_administrator_disables_a_token_with_a_reason(env):
    client = client_as(env, "tadmin")

    post(client, "/admin/tokens/100001/disable", {"reason": "Damaged in stock"})

    page = text(client.get("/admin/tokens/100001"))
    assert "Damaged in stock" in page
    assert "Disabled" in page


def test_reports_chart_and_csv_of_tokens_distributed(env):
    client = client_as(env, "admin")
    before = int(
        re.search(r"Tokens distributed: (\d+)", text(client.get("/admin/reports")))[1]
    )
    with env.database.write() as session:
        inventory.assign_and_ship(
            session,
            serial="100003",
            owner="tmuller",
            request_id=None,
            model_code="SID700",
            shipping_address="Somewhere",
            carrier="dhl",
            tracking_number="1",
            actor=actor_for(session, "lrossi"),
        )

    page = text(client.get("/admin/reports"))
    assert f"Tokens distributed: {before + 1}" in page
    assert '<svg class="chart"' in page

    exported = client.get("/admin/reports?report=tokens&format=csv")
    assert exported.mimetype == "text/csv"
    lines = text(exported).strip().splitlines()
    assert lines[0] == "at,serial,model,token_class,owner,inventory,by"
    assert any(",100003,SID700,hardware,tmuller,acme/emea,lrossi" in x for x in lines)


def test_audit_log_lists_deployments_and_request_history_with_csv(env):
    submit(env)
    client = client_as(env, "admin")

    page = text(client.get("/admin/audit"))
    assert "Deployed" in page
    assert "jdoe" in page

    exported = text(client.get("/admin/audit?format=csv&actor=jdoe"))
    assert exported.splitlines()[0] == "at,actor,action,subject,message"
    assert all(",jdoe," in line for line in exported.splitlines()[1:])


# -- errors and headers -----------------------------------------------------


def test_unknown_page_explains_what_to_do(env):
    response = client_as(env, "jdoe").get("/no/such/page")

    assert response.status_code == 404
    assert "Check the address or go back to the start page." in text(response)


def test_unexpected_error_shows_no_stack_trace(env, tmp_path):
    app = make_app(env.database, env.settings, TESTING=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")

    assert response.status_code == 500
    body = text(response)
    assert "Something went wrong on our side" in body
    assert "secret internals" not in body
    assert "Traceback" not in body


def test_pages_carry_security_headers(env):
    response = client_as(env, "jdoe").get("/")

    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
