"""The worker's jobs: outbox delivery under a stop request, incident retries."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from helpers_notifications import (
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
from engine.mail import RenderedMail
from engine.models import Incident, IncidentStatus, utcnow
from engine.notifications.jobs import INCIDENT_RETRIES, retry_incidents
from engine.notifications.outbox import deliver_pending, enqueue
from engine.notifications.recipients import Recipient
from engine.notifications.smtp import save_smtp_settings
from engine.worker import Worker


@pytest.fixture
def start_smtp_server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start


@pytest.fixture
def mail_settings(database, tmp_path):
    return notification_settings(database, tmp_path)


def add_messages(database, count: int) -> None:
    with database.write() as session:
        for i in range(count):
            enqueue(
                session,
                event="submitted",
                recipient=Recipient(f"user{i}@example.org", f"User {i}"),
                rendered=RenderedMail(f"Message {i}", "Body\n", "<p>Body</p>"),
            )


def test_a_stopped_worker_finishes_the_current_message_and_leaves_the_rest(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    with database.write() as session:
        save_smtp_settings(session, mail_settings, server.settings(), actor="admin")
    add_messages(database, 20)
    worker = Worker(database, mail_settings, interval=0)

    # The stop arrives while the first message is being sent, as a SIGTERM
    # would: the handler only sets a flag, and the send goes on.
    original = server.handler.handle_DATA

    async def stop_during_data(*args):
        worker.stop()
        return await original(*args)

    server.handler.handle_DATA = stop_during_data
    thread = threading.Thread(
        target=worker.run, kwargs={"install_signal_handlers": False}
    )
    thread.start()
    thread.join(timeout=60)

    assert not thread.is_alive()
    assert len(server.messages) == 1
    statuses = sorted(row.status for row in outbox(database))
    assert statuses == ["pending"] * 19 + ["sent"]


def test_each_message_is_logged_once(
    database, mail_settings, start_smtp_server, caplog
):
    server = start_smtp_server()
    add_messages(database, 3)

    with caplog.at_level(logging.INFO):
        deliver_pending(database, mail_settings, smtp=server.settings())

    lines = [
        r
        for r in caplog.records
        if r.name.startswith("engine.") and r.levelno >= logging.INFO
    ]
    assert len(lines) == 3
    assert all(r.name == "engine.notifications.outbox" for r in lines)
    assert all(" sent to user" in r.getMessage() for r in lines)


@pytest.fixture
def outage():
    with shipping_outage() as outage:
        yield outage


def fail_shipping(org) -> int:
    """Approve a hardware request and distribute it while shipping is down."""
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)
    org.distribute(
        "lucia",
        request_id,
        serial_number="E-700-1",
        shipping_address=SHIPPING_ADDRESS,
        carrier="dhl",
    )
    assert org.request(request_id).current_step.endswith("(failed)")
    return request_id


def mails_about_incidents(database, settings, server) -> list[tuple[str, str]]:
    """Send what is due and return the incident and failed mails, then forget."""
    deliver_pending(database, settings, smtp=server.settings())
    mails = [m for m in sent_to(server) if m[0] in ("incident", "failed")]
    server.messages.clear()
    return mails


def test_incidents_are_retried_with_backoff_then_left_to_an_administrator(
    database, mail_settings, start_smtp_server, outage
):
    server = start_smtp_server()
    org = make_org(database, mail_settings)
    fail_shipping(org)

    # The administrators hear of the first failure at once; the requester
    # not yet, as an automatic retry may still complete the request.
    assert mails_about_incidents(database, mail_settings, server) == [
        ("incident", "admin@example.org"),
        ("incident", "emma@example.org"),
    ]
    assert retry_incidents(database, mail_settings) == 0  # not due yet
    later = utcnow() + timedelta(days=1)
    retried, mails = [], []
    for _ in range(INCIDENT_RETRIES + 1):
        retried.append(retry_incidents(database, mail_settings, now=later))
        mails.append(mails_about_incidents(database, mail_settings, server))

    assert retried == [1] * INCIDENT_RETRIES + [0]
    with database.read() as session:
        incidents = session.scalars(select(Incident).order_by(Incident.id)).all()
        assert [(i.attempts, i.status) for i in incidents] == [
            (n, IncidentStatus.RESOLVED) for n in range(1, INCIDENT_RETRIES + 1)
        ] + [(INCIDENT_RETRIES + 1, IncidentStatus.OPEN)]
    # Nobody is mailed about the automatic retries that fail again; the
    # requester is told once the last one failed and an administrator must act.
    assert mails == [[]] * (INCIDENT_RETRIES - 1) + [
        [("failed", "jdoe@example.org")],
        [],
    ]


def test_a_request_completed_by_an_automatic_retry_is_never_reported_failed(
    database, mail_settings, start_smtp_server, outage
):
    server = start_smtp_server()
    org = make_org(database, mail_settings)
    request_id = fail_shipping(org)
    assert mails_about_incidents(database, mail_settings, server) == [
        ("incident", "admin@example.org"),
        ("incident", "emma@example.org"),
    ]

    outage.down = False
    assert retry_incidents(database, mail_settings, now=utcnow() + timedelta(days=1))

    assert org.request(request_id).status == "completed"
    deliver_pending(database, mail_settings, smtp=server.settings())
    assert sent_to(server) == [("completed", "jdoe@example.org")]


def test_a_request_cancelled_during_the_retries_is_reported_cancelled_not_failed(
    database, mail_settings, start_smtp_server, outage
):
    server = start_smtp_server()
    org = make_org(database, mail_settings)
    request_id = fail_shipping(org)
    mails_about_incidents(database, mail_settings, server)

    instance_id = org.request(request_id).instance_id
    with database.write() as session:
        instances.cancel_instance(
            session,
            instance_id,
            actor=actor_for(session, "admin"),
            reason="The shipping contract ended",
        )
    later = utcnow() + timedelta(days=1)
    assert retry_incidents(database, mail_settings, now=later) == 0

    deliver_pending(database, mail_settings, smtp=server.settings())
    assert sent_to(server) == [("cancelled", "jdoe@example.org")]
    text = server.messages[0].message.get_body(("plain",)).get_content()
    assert "The shipping contract ended" in text
