"""What the mails show and link to: the right console page, the carrier's name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers_engine import data_file
from helpers_notifications import (
    BASE_URL,
    notification_settings,
    outbox,
    shipping_outage,
)
from helpers_provisioning import SHIPPING_ADDRESS, make_org
from sqlalchemy import select

from engine import deployments, instances
from engine.identity import actor_for
from engine.models import HumanTask, TaskStatus, utcnow
from engine.notifications.jobs import INCIDENT_RETRIES, retry_incidents


@pytest.fixture
def mail_settings(database, tmp_path):
    return notification_settings(database, tmp_path)


@pytest.fixture
def org(database, mail_settings):
    return make_org(database, mail_settings)


def links(database, event: str) -> list[tuple[str, str]]:
    """Return (recipient, link) of each mail of ``event``, by recipient."""
    return sorted(
        (row.recipient, line)
        for row in outbox(database)
        if row.event == event
        for line in row.text_body.splitlines()
        if line.startswith(BASE_URL)
    )


def fail_until_left_to_an_administrator(database, settings) -> None:
    """Run the worker's automatic retries until none is left."""
    later = utcnow() + timedelta(days=1)
    for _ in range(INCIDENT_RETRIES):
        assert retry_incidents(database, settings, now=later) == 1


def test_incident_mail_links_to_the_instance_page_and_failed_to_the_request(
    org, database, mail_settings
):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)
    with shipping_outage():
        org.distribute(
            "lucia",
            request_id,
            serial_number="E-700-1",
            shipping_address=SHIPPING_ADDRESS,
            carrier="dhl",
        )
        fail_until_left_to_an_administrator(database, mail_settings)
    instance_id = org.request(request_id).instance_id

    assert links(database, "incident") == [
        ("admin@example.org", f"{BASE_URL}/admin/instances/{instance_id}"),
        ("emma@example.org", f"{BASE_URL}/admin/instances/{instance_id}"),
    ]
    assert links(database, "failed") == [
        ("jdoe@example.org", f"{BASE_URL}/requests/{request_id}")
    ]
    [incident] = [
        row
        for row in outbox(database)
        if row.event == "incident" and row.recipient == "admin@example.org"
    ]
    assert "Open the process instance to see the incident, retry the step" in (
        " ".join(incident.text_body.split())
    )
    assert f'href="{BASE_URL}/admin/instances/{instance_id}"' in incident.html_body


def test_an_instance_without_a_request_links_its_initiator_to_the_console_home(
    org, database, mail_settings
):
    # Started as from a modeler or the API: a process instance, no request.
    with database.write() as session:
        deployments.deploy(
            session,
            [data_file("engine_script_fails.bpmn")],
            deployed_by="designer",
            source="tests",
        )
        instance = instances.start_instance(
            session,
            "engine_script_fails",
            actor=actor_for(session, "jdoe"),
            settings=mail_settings,
        )
        instance_id = instance.id
    with database.read() as session:
        task_id = session.scalars(
            select(HumanTask.id).where(
                HumanTask.instance_id == instance_id,
                HumanTask.status == TaskStatus.OPEN,
            )
        ).one()
    org.complete("anna", task_id, {"divisor": 0})
    fail_until_left_to_an_administrator(database, mail_settings)

    assert links(database, "submitted") == [("jdoe@example.org", f"{BASE_URL}/")]
    assert links(database, "failed") == [("jdoe@example.org", f"{BASE_URL}/")]
    assert links(database, "incident") == [
        ("admin@example.org", f"{BASE_URL}/admin/instances/{instance_id}"),
        ("emma@example.org", f"{BASE_URL}/admin/instances/{instance_id}"),
    ]


def test_completed_mail_names_the_carrier_as_the_form_lists_it(org, database):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)
    org.distribute(
        "lucia",
        request_id,
        serial_number="E-700-1",
        shipping_address=SHIPPING_ADDRESS,
        carrier="postal_service",
        tracking_number="JD0146000038",
    )

    [completed] = [row for row in outbox(database) if row.event == "completed"]
    assert "Carrier:         Postal service\n" in completed.text_body
    assert "<td>Postal service</td>" in completed.html_body
