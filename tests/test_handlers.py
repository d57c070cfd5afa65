"""Service task handlers, run through small diagrams of their own.

Each test deploys a diagram from tests/data/inventory_*.bpmn whose service
task calls one topic, and runs it through engine.instances, so the handler
runs as in production: inside the instance's transaction, with failures
turned into incidents that are retried after a fix.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from helpers_inventory import actor, add_token, seed
from sqlalchemy import select

from engine import deployments, instances
from engine.identity import Actor
from engine.models import Incident
from engine.provisioning import directory, inventory, software
from engine.provisioning.inventory_models import OnDemandService

DATA = Path(__file__).resolve().parent / "data"
JDOE = Actor("jdoe", "acme/emea/paris")


@pytest.fixture
def db(database):
    files = [(p.name, p.read_bytes()) for p in sorted(DATA.glob("inventory_*.bpmn"))]
    with database.write() as session:
        seed(session)
        add_token(session, "E-1", domain="acme/emea")
        add_token(session, "P-2", domain="acme/emea/paris", state="assigned", owner="x")
        add_token(session, "U-1", domain="acme/americas")
        deployments.deploy(session, files, deployed_by="designer", source="tests")
    return database


def start(db, key, settings, **variables) -> int:
    variables.setdefault("requester", "jdoe")
    with db.write() as session:
        instance = instances.start_instance(
            session, key, actor=JDOE, variables=variables, settings=settings
        )
        return instance.id


def view(db, instance_id):
    """Return status, data and open incident messages of an instance."""
    with db.read() as session:
        described = instances.describe_instance(session, instance_id)
        incidents = [i.message for i in described.incidents if i.status == "open"]
        return described.instance.status, described.data, incidents


def retry(db, instance_id, settings, by="root"):
    with db.write() as session:
        instances.retry_incident(
            session, instance_id, actor=actor(session, by), settings=settings
        )


def distribute(db, instance_id, settings, serial, by="emea_dist"):
    with db.write() as session:
        (task,) = instances.describe_instance(session, instance_id).open_tasks
        instances.complete_task(
            session,
            task.id,
            actor=actor(session, by),
            data={
                "serial_number": serial,
                "shipping_address": "1 rue de la Paix, Paris",
                "carrier": "dhl",
                "tracking_number": "JD0001",
            },
            settings=settings,
        )


def test_assign_and_ship_token_ships_the_chosen_serial(db, settings):
    instance_id = start(
        db, "inventory_ship", settings, token_model="SID700", request_id=5
    )

    distribute(db, instance_id, settings, "E-1")

    status, data, incidents = view(db, instance_id)
    assert (status, incidents) == ("completed", [])
    assert data["token_state"] == "shipped"
    with db.read() as session:
        token = inventory.find_token(session, "E-1")
        assert (token.state, token.owner, token.request_id) == ("shipped", "jdoe", 5)
        assert (token.carrier, token.tracking_number) == ("dhl", "JD0001")


def test_an_unavailable_serial_opens_an_incident_that_a_retry_clears(db, settings):
    instance_id = start(db, "inventory_ship", settings, token_model="SID700")

    distribute(db, instance_id, settings, "P-2")

    status, _, incidents = view(db, instance_id)
    assert status == "incident"
    assert incidents == [
        "Serial P-2 is not available (state assigned); make serial P-2 available "
        "in the token inventory and retry the incident, or cancel the request."
    ]
    with db.read() as session:
        # The failed step left nothing behind in the inventory.
        token = inventory.find_token(session, "P-2")
        assert (token.state, token.owner) == ("assigned", "x")
        assert inventory.token_history(session, "P-2") == []

    with db.write() as session:
        inventory.unassign_token(session, actor(session, "paris_admin"), "P-2")
    retry(db, instance_id, settings)

    status, data, incidents = view(db, instance_id)
    assert (status, incidents, data["token_state"]) == ("completed", [], "shipped")
    with db.read() as session:
        token = inventory.find_token(session, "P-2")
        assert (token.state, token.owner) == ("shipped", "jdoe")
        incident = session.scalars(select(Incident)).one()
        assert incident.status == "resolved"


@pytest.mark.parametrize(
    ("serial", "fact"),
    [
        ("E-1", "Serial E-1 is a SID700, but the request is for a SID800"),
        ("OLD-1", "Serial OLD-1 expired on 2020-01-31"),
    ],
    ids=["another model", "expired"],
)
def test_a_serial_that_can_never_fit_says_that_retrying_cannot_help(
    db, settings, serial, fact
):
    with db.write() as session:
        add_token(session, "OLD-1", model="SID800", expires_on=date(2020, 1, 31))
    instance_id = start(db, "inventory_ship", settings, token_model="SID800")

    distribute(db, instance_id, settings, serial)

    status, _, incidents = view(db, instance_id)
    assert status == "incident"
    assert incidents == [
        f"{fact}. Retrying cannot help, as the serial was recorded with the "
        "distribution step: cancel the request (its requester or an administrator "
        "of security domain 'acme/emea/paris' can) and submit a new one."
    ]


def test_a_serial_outside_the_distributors_scope_is_refused(db, settings):
    instance_id = start(db, "inventory_ship", settings, token_model="SID700")

    distribute(db, instance_id, settings, "U-1")

    status, _, incidents = view(db, instance_id)
    assert status == "incident"
    assert incidents == [
        "emea_dist may not assign token U-1: it belongs to the inventory of "
        "'acme/americas', outside your scope (acme/emea). Ask a token administrator "
        "of that domain; fix this and retry the incident."
    ]


def test_issue_software_token_puts_the_activation_link_in_the_data(db, settings):
    instance_id = start(
        db, "inventory_issue_software", settings, token_model="AUTHAPP", request_id=9
    )

    status, data, _ = view(db, instance_id)
    assert status == "completed"
    assert data["serial_number"].startswith("SW")
    assert data["activation_link"].startswith(f"{settings.base_url}/activate/")
    with db.write() as session:
        token, uri, _ = software.activation_details(
            session,
            data["activation_link"],
            actor=actor(session, "jdoe"),
            settings=settings,
        )
        assert (token.serial, token.owner, token.request_id) == (
            data["serial_number"],
            "jdoe",
            9,
        )
        assert uri.startswith("otpauth://totp/")


def test_issue_software_token_with_a_hardware_model_fails_clearly(db, settings):
    instance_id = start(db, "inventory_issue_software", settings, token_model="SID700")

    status, _, incidents = view(db, instance_id)

    assert status == "incident"
    assert incidents == [
        "Token model 'SID700' is a hardware model; a software token needs a "
        "software token profile; correct the token model or the user, then retry "
        "the incident."
    ]


def test_disable_old_token_disables_the_requesters_token(db, settings):
    with db.write() as session:
        add_token(session, "OLD-1", state="active", owner="jdoe")

    instance_id = start(
        db, "inventory_disable_old", settings, old_serial="OLD-1", request_id=3
    )

    status, data, _ = view(db, instance_id)
    assert (status, data["old_token_state"]) == ("completed", "disabled")
    with db.read() as session:
        (event,) = inventory.token_history(session, "OLD-1")
        assert event.message == "Reported lost or broken in request 3"


def test_disable_old_token_refuses_someone_elses_token_until_fixed(db, settings):
    with db.write() as session:
        add_token(session, "OLD-2", state="active", owner="ebrown")
    instance_id = start(db, "inventory_disable_old", settings, old_serial="OLD-2")

    status, _, incidents = view(db, instance_id)
    assert status == "incident"
    assert incidents == [
        "Token OLD-2 is not assigned to jdoe (owner: ebrown); cancel the request "
        "if the serial is wrong, or reassign the token, then retry the incident."
    ]

    with db.write() as session:
        inventory.find_token(session, "OLD-2").owner = "jdoe"
    retry(db, instance_id, settings)
    assert view(db, instance_id)[0] == "completed"


def test_a_missing_variable_is_named(db, settings):
    instance_id = start(db, "inventory_disable_old", settings, old_serial="")

    _, _, incidents = view(db, instance_id)

    assert incidents == [
        f"Step 'disable_old_token' of request {instance_id} needs the variable(s) "
        "old_serial, which are empty; the diagram or the request form must set them."
    ]


def test_enable_ondemand_tokencode_subscribes_the_requester(db, settings):
    e_mail = start(db, "inventory_ondemand", settings)
    with db.write() as session:
        directory.create_user(
            session,
            username="mobile",
            display_name="Mo Bile",
            email="mobile@acme.example",
            domain_path="acme/emea/paris",
            actor="system",
        )
    no_phone = start(
        db, "inventory_ondemand", settings, requester="mobile", delivery="sms"
    )

    assert view(db, e_mail)[0] == "completed"
    assert view(db, no_phone)[2] == [
        "No phone number to send tokencodes to mobile by SMS; record one in the "
        "request's 'destination', then retry the incident."
    ]
    with db.read() as session:
        service = session.scalars(select(OnDemandService)).one()
        assert (service.username, service.delivery, service.destination) == (
            "jdoe",
            "email",
            "jdoe@acme.example",
        )


def test_add_group_membership_waits_for_the_group_to_exist(db, settings):
    instance_id = start(db, "inventory_group", settings, group_name="vpn-users")

    status, _, incidents = view(db, instance_id)
    assert status == "incident"
    assert incidents == [
        "Group 'vpn-users' does not exist; create it first or correct the group "
        "name; then retry the incident."
    ]

    with db.write() as session:
        directory.create_group(session, "vpn-users")
    retry(db, instance_id, settings)

    status, data, _ = view(db, instance_id)
    assert (status, data["membership_added"]) == ("completed", True)
    with db.read() as session:
        assert directory.groups_of(session, "jdoe") == ["vpn-users"]


def test_create_account_creates_the_user_in_the_requests_domain(db, settings):
    account = {
        "username": "newbie",
        "display_name": "New Bie",
        "email": "newbie@acme.example",
    }
    instance_id = start(
        db,
        "inventory_account",
        settings,
        requester="self-service:newbie@acme.example",
        security_domain="acme/americas",
        new_account=account,
    )

    status, data, _ = view(db, instance_id)
    assert (status, data["account_username"]) == ("completed", "newbie")
    with db.read() as session:
        user = directory.get_user(session, "newbie")
        assert (user.domain.path, user.email) == (
            "acme/americas",
            "newbie@acme.example",
        )


def test_create_account_with_a_taken_username_fails_clearly(db, settings):
    instance_id = start(
        db,
        "inventory_account",
        settings,
        username="jdoe",
        display_name="Another Jane",
        email="another.jane@acme.example",
        security_domain="acme/emea",
    )

    _, _, incidents = view(db, instance_id)

    assert incidents == [
        "The account was not created: A user named 'jdoe' exists already; choose "
        "another username. Correct the directory (for example free the username), "
        "then retry the incident."
    ]


def test_reminder_escalation_and_expiry_record_what_happened(db, settings):
    instance_id = start(db, "inventory_timers", settings)

    status, data, _ = view(db, instance_id)

    assert status == "completed"
    assert data["reminders_sent"] == 1
    assert data["escalated"] is True
    assert data["outcome"] == "expired: no decision within the allowed time"
