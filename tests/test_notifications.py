"""Which mails a request causes, to whom, with what content, and when."""

from __future__ import annotations

import pytest
from helpers_notifications import (
    BASE_URL,
    deliver,
    notification_settings,
    outbox,
    sent_to,
    shipping_outage,
)
from helpers_provisioning import SHIPPING_ADDRESS, make_org
from smtp_server import smtp_servers
from sqlalchemy import select

from engine import instances
from engine.identity import actor_for
from engine.models import Incident
from engine.notifications import OutboxMessage
from engine.provisioning import requests


@pytest.fixture
def start_smtp_server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start


@pytest.fixture
def mail_settings(database, tmp_path):
    return notification_settings(database, tmp_path)


@pytest.fixture
def org(database, mail_settings):
    return make_org(database, mail_settings)


def test_full_hardware_request_sends_the_expected_mails(
    org, database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    request_id = org.new_hardware("jdoe")
    assert deliver(database, mail_settings, server) == 4
    assert sent_to(server) == [
        ("approval_needed", "anna@example.org"),
        ("approval_needed", "hugo@example.org"),
        ("approval_needed", "marc@example.org"),
        ("submitted", "jdoe@example.org"),
    ]
    submitted = next(
        m.message for m in server.messages if m.rcpt_tos == ["jdoe@example.org"]
    )
    assert submitted["Subject"] == (
        f"[Token Provisioning] Request request-{request_id} received: "
        "New or additional token"
    )
    assert (
        f"{BASE_URL}/requests/{request_id}"
        in submitted.get_body(("plain",)).get_content()
    )
    first_task = org.task(request_id)
    approval = next(
        m.message for m in server.messages if m.rcpt_tos == ["anna@example.org"]
    )
    assert (
        f"{BASE_URL}/tasks/{first_task}" in approval.get_body(("plain",)).get_content()
    )

    # First of two approval steps: the next approvers are asked, never the one
    # who approved already, and the requester hears nothing yet.
    server.messages.clear()
    org.decide("anna", request_id, comment="Fine by me")
    deliver(database, mail_settings, server)
    assert sent_to(server) == [
        ("approval_needed", "hugo@example.org"),
        ("approval_needed", "marc@example.org"),
    ]

    server.messages.clear()
    org.decide("marc", request_id, comment="Approved for the Paris office")
    deliver(database, mail_settings, server)
    assert sent_to(server) == [
        ("approved", "jdoe@example.org"),
        ("distribution_needed", "lucia@example.org"),
    ]
    approved = next(
        m.message for m in server.messages if m.rcpt_tos[0] == "jdoe@example.org"
    )
    text = approved.get_body(("plain",)).get_content()
    assert "approved by Marc" in text
    assert "Approved for the Paris office" in text

    server.messages.clear()
    org.distribute(
        "lucia",
        request_id,
        serial_number="E-700-1",
        shipping_address=SHIPPING_ADDRESS,
        carrier="dhl",
        tracking_number="JD0146000038",
    )
    deliver(database, mail_settings, server)
    assert sent_to(server) == [("completed", "jdoe@example.org")]
    completed = server.messages[0].message
    assert completed["Subject"] == (
        f"[Token Provisioning] Request request-{request_id} completed: "
        "your token is on its way"
    )
    text = completed.get_body(("plain",)).get_content()
    assert "Serial number:   E-700-1" in text
    assert "Tracking number: JD0146000038" in text
    assert "E-700-1" in completed.get_body(("html",)).get_content()

    assert {m.status for m in outbox(database)} == {"sent"}


def test_rejection_tells_the_requester_with_the_comment(
    org, database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    request_id = org.new_hardware("jdoe")
    deliver(database, mail_settings, server)
    server.messages.clear()

    org.decide("hugo", request_id, "reject", comment="You already hold two tokens")
    deliver(database, mail_settings, server)

    assert sent_to(server) == [("rejected", "jdoe@example.org")]
    text = server.messages[0].message.get_body(("plain",)).get_content()
    assert "rejected by Hugo" in text
    assert "Reason given:\nYou already hold two tokens" in text


def test_software_token_completion_carries_the_activation_link(
    org, database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    request_id = org.new_software("jdoe")
    org.decide("anna", request_id)
    org.distribute("lucia", request_id, delivery_method="activation_email")
    deliver(database, mail_settings, server)

    completed = [
        m.message
        for m in server.messages
        if m.message["X-Provisioning-Event"] == "completed"
    ]
    assert len(completed) == 1
    with database.read() as session:
        instance_id = org.request(request_id).instance_id
        link = instances.describe_instance(session, instance_id).data["activation_link"]
    assert link.startswith(BASE_URL)
    assert link in completed[0].get_body(("plain",)).get_content()
    assert link in completed[0].get_body(("html",)).get_content()


def test_cancelling_a_request_tells_the_requester(
    org, database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    request_id = org.new_hardware("jdoe")
    deliver(database, mail_settings, server)
    server.messages.clear()

    with database.write() as session:
        requests.cancel_request(
            session, actor_for(session, "jdoe"), request_id, "No longer needed"
        )
    deliver(database, mail_settings, server)

    assert sent_to(server) == [("cancelled", "jdoe@example.org")]
    text = server.messages[0].message.get_body(("plain",)).get_content()
    assert "No longer needed" in text


def test_a_rolled_back_step_writes_no_mail(org, database, mail_settings):
    with pytest.raises(RuntimeError):
        with database.write() as session:
            requests.submit_request(
                session,
                actor=actor_for(session, "jdoe"),
                request_type="new_token",
                form={
                    "token_class": "hardware",
                    "token_model": "SID700",
                    "shipping_address": SHIPPING_ADDRESS,
                    "justification": "Starting next week",
                },
                settings=mail_settings,
            )
            raise RuntimeError("the web request failed after the step")

    assert outbox(database) == []
    org.new_hardware("jdoe")
    assert len(outbox(database)) == 4


def test_an_incident_tells_the_administrators_at_once_and_not_yet_the_requester(
    org, database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)
    deliver(database, mail_settings, server)
    server.messages.clear()

    with shipping_outage():
        org.distribute(
            "lucia",
            request_id,
            serial_number="E-700-1",
            shipping_address=SHIPPING_ADDRESS,
            carrier="dhl",
        )
    with database.read() as session:
        assert session.scalars(select(Incident)).first() is not None
    deliver(database, mail_settings, server)

    # The worker retries the step before the request counts as failed; see
    # test_worker_mail for the "failed" mail once the retries run out.
    assert sent_to(server) == [
        ("incident", "admin@example.org"),
        ("incident", "emma@example.org"),
    ]


def test_a_broken_custom_template_falls_back_to_the_default(
    org, database, mail_settings
):
    from engine.notifications.models import MailTemplateOverride

    with database.write() as session:
        # Stored directly: the console refuses such a template, but one saved
        # before an upgrade changed the variables may still exist.
        session.add(
            MailTemplateOverride(
                event="submitted", request_type="", subject="{{ 1 / 0 }}"
            )
        )
    org.new_hardware("jdoe")

    subjects = [m.subject for m in outbox(database) if m.event == "submitted"]
    assert len(subjects) == 1
    assert "received" in subjects[0]


def test_outbox_rows_are_linked_to_their_instance(org, database):
    org.new_hardware("jdoe")
    with database.read() as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert {r.request_type for r in rows} == {"new_token"}
        assert all(r.instance_id is not None for r in rows)


def test_a_mail_that_cannot_be_rendered_fails_visibly_without_stopping_the_step(
    org, database, monkeypatch
):
    from engine.mail import MailTemplateError
    from engine.notifications import listener

    def broken(*args):
        raise MailTemplateError("The default text template fails at line 3.")

    monkeypatch.setattr(listener, "_render", broken)
    request_id = org.new_hardware("jdoe")

    assert org.request(request_id).status == "pending"
    rows = outbox(database)
    assert len(rows) == 4
    assert {r.status for r in rows} == {"failed"}
    assert rows[0].last_error == (
        "The e-mail could not be rendered: The default text template fails at line 3."
    )
