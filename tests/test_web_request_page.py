"""The request page as the requester and as staff read it: details, failures,
cancelling."""

from __future__ import annotations

import re

import pytest
from helpers_web import (
    client_as,
    open_task_id,
    post,
)

from engine.identity import actor_for
from engine.provisioning import requests as provisioning

ADDRESS = "Jane Doe\r\n12 rue de Rivoli\r\n75001 Paris"
HARDWARE_FORM = {
    "token_class": "hardware",
    "token_model": "SID700",
    "shipping_address": ADDRESS,
    "justification": "New in the Paris office.",
}


def text(response) -> str:
    return response.get_data(as_text=True)


def submit(env, username="jdoe") -> int:
    with env.database.write() as session:
        created = provisioning.submit_request(
            session,
            actor=actor_for(session, username),
            request_type="new_token",
            form=HARDWARE_FORM,
            settings=env.settings,
        )
        return created.id


def take_step(env, request_id, username, step, **kwargs):
    with env.database.write() as session:
        step(
            session,
            actor_for(session, username),
            open_task_id(env.database, request_id),
            settings=env.settings,
            **kwargs,
        )


def shipped(env, carrier="postal_service") -> int:
    request_id = submit(env)
    take_step(env, request_id, "hbernard", provisioning.decide, decision="approve")
    take_step(env, request_id, "aschmidt", provisioning.decide, decision="approve")
    take_step(
        env,
        request_id,
        "lrossi",
        provisioning.distribute,
        serial_number="100001",
        shipping_address=ADDRESS,
        carrier=carrier,
        tracking_number="T123",
    )
    return request_id


@pytest.mark.parametrize("username", ["jdoe", "lrossi"])
def test_request_details_show_the_delivery_as_labelled_fields(env, username):
    request_id = shipped(env)

    page = text(client_as(env, username).get(f"/requests/{request_id}"))
    details = page[page.index('id="x-title"') :]

    assert "{" not in details.split("</section>")[0]
    assert '<dt class="kv-group-title">Delivery</dt>' in details
    assert "<dt>Serial number</dt>\n  <dd>100001</dd>" in details
    assert "<dt>Carrier</dt>\n  <dd>Postal service</dd>" in details
    assert "<dt>Tracking number</dt>\n  <dd>T123</dd>" in details
    assert (
        '<span class="multiline">Jane Doe\n12 rue de Rivoli\n75001 Paris</span>'
        in details
    )


def test_delivery_panel_names_the_carrier_as_the_form_lists_it(env):
    request_id = shipped(env)

    page = text(client_as(env, "jdoe").get(f"/requests/{request_id}"))
    delivery = page[page.index('id="del-title"') :].split("</section>")[0]

    assert "<dt>Carrier</dt><dd>Postal service</dd>" in delivery


@pytest.fixture
def failed_request(env, monkeypatch):
    """A software token request whose 'Issue software token' step failed."""
    from engine.provisioning import software

    def broken(*args, **kwargs):
        raise ValueError("token profile AUTHAPP has no issuer key")

    monkeypatch.setattr(software, "issue_software_token", broken)
    with env.database.write() as session:
        request_id = provisioning.submit_request(
            session,
            actor=actor_for(session, "jdoe"),
            request_type="new_token",
            form={
                "token_class": "software",
                "token_model": "AUTHAPP",
                "justification": "Phone only.",
            },
            settings=env.settings,
        ).id
    # Software tokens take one approval step in the demo policy.
    take_step(env, request_id, "hbernard", provisioning.decide, decision="approve")
    take_step(env, request_id, "lrossi", provisioning.distribute)
    return request_id


def test_requester_sees_a_plain_message_when_a_step_failed(env, failed_request):
    page = text(client_as(env, "jdoe").get(f"/requests/{failed_request}"))

    assert "Your request is waiting on a problem." in page
    assert (
        "The administrators have been told and will retry it; your request "
        "carries on from there. You need not do anything." in page
    )
    assert "ValueError" not in page
    assert "issuer key" not in page


def test_staff_see_which_step_failed_and_why(env, failed_request):
    page = text(client_as(env, "admin").get(f"/requests/{failed_request}"))
    notice = page[page.index('id="failure-notice"') :].split("</div>")[0]

    assert "The step &#39;Issue software token&#39; failed: " in notice
    assert "token profile AUTHAPP has no issuer key" in notice
    assert "See the incident and retry it" in notice


def test_cancel_form_says_the_reason_is_optional_and_cancels_without_one(env):
    request_id = submit(env)
    client = client_as(env, "jdoe")
    page = text(client.get(f"/requests/{request_id}"))
    assert '<label for="reason">Reason (optional)</label>' in page
    textarea = re.search(r'<textarea[^>]*id="reason"[^>]*>', page)[0]
    assert "required" not in textarea
    assert 'maxlength="2000"' in textarea

    response = post(client, f"/requests/{request_id}/cancel", {"reason": ""})

    assert response.status_code == 302
    page = text(client.get(f"/requests/{request_id}"))
    assert "Cancelled by jdoe: Cancelled by the requester" in page


def test_cancel_with_a_too_long_reason_names_the_field_and_keeps_the_request(env):
    request_id = submit(env)
    client = client_as(env, "jdoe")

    response = post(client, f"/requests/{request_id}/cancel", {"reason": "x" * 2001})

    assert response.status_code == 422
    assert (
        '<p class="error" id="reason-err">Keep the reason under 2,000 characters.</p>'
        in text(response)
    )
    with env.database.read() as session:
        assert provisioning.get_request(
            session, actor_for(session, "jdoe"), request_id
        ).request.is_open


def test_cancel_without_csrf_token_is_refused(env):
    request_id = submit(env)

    response = client_as(env, "jdoe").post(f"/requests/{request_id}/cancel")

    assert response.status_code == 400
    assert "without a valid security token" in text(response)


def test_task_page_shows_the_request_details_as_labelled_fields(env):
    request_id = submit(env)
    task_id = open_task_id(env.database, request_id)

    page = text(client_as(env, "hbernard").get(f"/tasks/{task_id}"))

    assert (
        '<span class="multiline">Jane Doe\n12 rue de Rivoli\n75001 Paris</span>' in page
    )


def test_shipped_token_names_its_carrier_as_the_form_listed_it(env):
    shipped(env, carrier="dhl")

    mine = text(client_as(env, "jdoe").get("/tokens"))
    inventory_page = text(client_as(env, "pnovak").get("/admin/tokens/100001"))

    assert "Sent by DHL, tracking number <strong>T123</strong>" in mine
    assert "Shipped by DHL, tracking T123" in inventory_page
