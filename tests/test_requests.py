"""Submitting, following, deciding and cancelling provisioning requests."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from helpers_provisioning import GROUP, SHIPPING_ADDRESS, Org, make_org
from sqlalchemy import select

from engine import instances
from engine.errors import (
    ConflictError,
    InstanceNotActive,
    NotFound,
    PermissionDenied,
    TaskAlreadyCompleted,
    ValidationFailed,
)
from engine.identity import actor_for
from engine.models import HumanTask
from engine.provisioning import requests
from engine.provisioning.inventory_models import Token, TokenModel
from engine.provisioning.request_models import ProvisioningRequest
from engine.provisioning.requests_cli import requests_group


@pytest.fixture
def org(database, settings) -> Org:
    return make_org(database, settings)


def submit_errors(org: Org, username: str, request_type: str, form: dict) -> dict:
    with pytest.raises(ValidationFailed) as failed:
        org.submit(username, request_type, **form)
    return failed.value.field_errors


def in_days(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


HARDWARE = {
    "token_class": "hardware",
    "token_model": "SID700",
    "shipping_address": SHIPPING_ADDRESS,
    "justification": "Starting in the Paris office next week",
}

BAD_FORMS = [
    (
        "new_token",
        {},
        {
            "token_class": "Token type is required.",
            "token_model": "Token model is required.",
            "justification": "Justification is required.",
        },
    ),
    (
        "new_token",
        {**HARDWARE, "token_class": "usb"},
        {"token_class": "Token type must be one of: hardware, software."},
    ),
    (
        "new_token",
        {**HARDWARE, "token_model": "XYZ"},
        {
            "token_model": "Token model 'XYZ' does not exist; choose one of: "
            "SID700, SID800."
        },
    ),
    (
        "new_token",
        {**HARDWARE, "token_model": "APP"},
        {
            "token_model": "Token model 'APP' is a software token, but this request "
            "is for a hardware token; choose one of: SID700, SID800."
        },
    ),
    (
        "new_token",
        {**HARDWARE, "token_class": "software"},
        {
            "token_model": "Token model 'SID700' is a hardware token, but this "
            "request is for a software token; choose one of: APP."
        },
    ),
    (
        "new_token",
        {**HARDWARE, "token_model": ""},
        {"token_model": "Token model is required; choose one of: SID700, SID800."},
    ),
    (
        "new_token",
        {**HARDWARE, "shipping_address": "  "},
        {
            "shipping_address": "Shipping address is required for a hardware token; "
            "give the address the token should be sent to."
        },
    ),
    (
        "new_token",
        {**HARDWARE, "justification": "need it"},
        {
            "justification": "Justification must be at least 10 characters; say why "
            "you need it."
        },
    ),
    (
        "new_token",
        {**HARDWARE, "justification": "x" * 2001},
        {"justification": "Justification must be at most 2000 characters."},
    ),
    (
        "new_token",
        {**HARDWARE, "colour": "red"},
        {
            "colour": "'colour' is not a field of a request for 'New or additional "
            "token'; the fields are: token_class, token_model, shipping_address, "
            "justification."
        },
    ),
    (
        "replace_lost_token",
        {"old_serial": "E-700-1", "justification": "Dropped it in the Seine"},
        {
            "old_serial": "Token 'E-700-1' is not one of your tokens; choose one of: "
            "J-LATER, J-SOON."
        },
    ),
    (
        "replace_lost_token",
        {
            "old_serial": "J-LATER",
            "token_model": "APP",
            "justification": "Dropped it in the Seine",
        },
        {
            "token_model": "Token model 'APP' is a software token, but this request "
            "is for a hardware token; choose one of: SID700, SID800."
        },
    ),
    (
        "group_membership",
        {"group_name": "admins", "justification": "I need the VPN for on-call"},
        {"group_name": "Group 'admins' does not exist; choose one of: vpn-users."},
    ),
    (
        "ondemand_tokencode",
        {"delivery": "sms"},
        {
            "destination": "Phone number is required for SMS delivery, such as "
            "+33 1 23 45 67 89."
        },
    ),
    (
        "ondemand_tokencode",
        {"delivery": "sms", "destination": "call me"},
        {
            "destination": "'call me' is not a phone number; write digits, "
            "optionally starting with +, such as +33 1 23 45 67 89."
        },
    ),
    (
        "ondemand_tokencode",
        {"delivery": "pigeon"},
        {"delivery": "Deliver tokencodes by must be one of: sms, email."},
    ),
]


@pytest.mark.parametrize(("request_type", "form", "errors"), BAD_FORMS)
def test_bad_request_form_is_refused_with_a_message_per_field(
    org, request_type, form, errors
):
    assert submit_errors(org, "jdoe", request_type, form) == errors
    with org.database.read() as session:
        assert session.scalars(select(ProvisioningRequest)).all() == []


def test_unknown_request_type_is_refused(org):
    assert submit_errors(org, "jdoe", "new_laptop", {}) == {
        "request_type": "'new_laptop' is not a request type; choose one of: "
        "new_token, replace_expiring_token, replace_lost_token, "
        "ondemand_tokencode, group_membership, new_account."
    }


def test_member_cannot_ask_for_a_group_twice(org):
    request_id = org.submit(
        "jdoe", "group_membership", group_name=GROUP, justification="On-call duty"
    )
    org.decide("anna", request_id)

    assert submit_errors(
        org,
        "jdoe",
        "group_membership",
        {"group_name": GROUP, "justification": "On-call duty again"},
    ) == {"group_name": "You are already a member of group 'vpn-users'."}


def test_expiring_replacement_is_refused_before_the_window_with_the_date(org):
    later = in_days(100)
    allowed = in_days(70)

    errors = submit_errors(
        org, "jdoe", "replace_expiring_token", {"old_serial": "J-LATER"}
    )

    assert errors == {
        "old_serial": f"Token 'J-LATER' expires on {later}; a replacement can be "
        f"requested from {allowed} (30 days before expiry)."
    }


def test_expiring_replacement_window_follows_the_setting(org):
    org.settings = dataclasses.replace(org.settings, expiry_replacement_days=100)
    request_id = org.submit("jdoe", "replace_expiring_token", old_serial="J-LATER")

    request = org.request(request_id)
    assert (request.old_serial, request.token_model, request.token_class) == (
        "J-LATER",
        "SID700",
        "hardware",
    )
    assert request.details["shipping_address"] == SHIPPING_ADDRESS


def test_expiring_replacement_within_the_window_goes_straight_to_distribution(org):
    request_id = org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")

    assert [s for _, s in org.open_tasks(request_id)] == [requests.HARDWARE_STEP]
    assert org.request(request_id).current_step == "Distribute hardware token"


def test_second_open_request_for_the_same_token_is_refused(org):
    first = org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")

    with pytest.raises(ConflictError) as conflict:
        org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")
    assert str(conflict.value) == (
        f"Request {first} (Replacement of an expiring token) for token 'J-SOON' is "
        "still pending; follow that request, or cancel it, before asking again."
    )

    with org.database.write() as session:
        requests.cancel_request(session, org["jdoe"], first, "Asked by mistake")
    again = org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")
    assert org.request(again).status == "pending"


def test_second_open_new_token_request_of_the_same_class_is_refused(org):
    first = org.new_hardware("jdoe")

    with pytest.raises(ConflictError) as conflict:
        org.new_hardware("jdoe", model="SID800")

    assert str(conflict.value) == (
        f"Request {first} (New or additional token) for a hardware token of jdoe "
        "is still pending; follow that request, or cancel it, before asking again."
    )
    claire = org.new_hardware("claire")
    assert _request_ids(org) == [first, claire]


def test_new_token_request_of_the_other_class_is_not_a_duplicate(org):
    hardware = org.new_hardware("jdoe")

    software = org.new_software("jdoe")

    assert (org.request(hardware).status, org.request(software).status) == (
        "pending",
        "pending",
    )
    with pytest.raises(ConflictError) as conflict:
        org.new_software("jdoe")
    assert str(conflict.value) == (
        f"Request {software} (New or additional token) for a software token of "
        "jdoe is still pending; follow that request, or cancel it, before asking "
        "again."
    )


def test_second_open_request_of_a_type_without_token_is_refused(org):
    first = org.submit(
        "jdoe", "group_membership", group_name=GROUP, justification="VPN from home"
    )

    with pytest.raises(ConflictError) as conflict:
        org.submit(
            "jdoe",
            "group_membership",
            group_name=GROUP,
            justification="Still need the VPN",
        )

    assert str(conflict.value) == (
        f"Request {first} (Membership of a user group) of jdoe is still pending; "
        "follow that request, or cancel it, before asking again."
    )


def _request_ids(org: Org) -> list[int]:
    with org.database.read() as session:
        return list(
            session.scalars(
                select(ProvisioningRequest.id).order_by(ProvisioningRequest.id)
            )
        )


def test_submit_writes_the_request_and_the_start_variables(org):
    request_id = org.new_hardware("jdoe")

    request = org.request(request_id)
    with org.database.read() as session:
        view = instances.describe_instance(session, request.instance_id)
        instance = view.instance
        started = (instance.domain_path, instance.initiator, instance.business_key)
    data = view.data
    assert (request.status, request.current_step, request.requester) == (
        "pending",
        "Approve request",
        "jdoe",
    )
    assert started == ("acme/emea/paris", "jdoe", f"request-{request_id}")
    assert {k: data[k] for k in requests_start_keys()} == {
        "request_id": request_id,
        "request_type": "new_token",
        "token_class": "hardware",
        "security_domain": "acme/emea/paris",
        "requester": "jdoe",
        "token_model": "SID700",
        "old_serial": "",
        "shipping_address": SHIPPING_ADDRESS,
        "justification": "Starting in the Paris office next week",
        "group_name": "",
        "reminder_after": "P2D",
        "escalate_after": "P5D",
        "auto_cancel_after": "P14D",
    }


def requests_start_keys() -> list[str]:
    return [
        "request_id",
        "request_type",
        "token_class",
        "security_domain",
        "requester",
        "token_model",
        "old_serial",
        "shipping_address",
        "justification",
        "group_name",
        "reminder_after",
        "escalate_after",
        "auto_cancel_after",
    ]


def test_submit_rolls_back_with_the_transaction(org):
    with pytest.raises(RuntimeError):
        with org.database.write() as session:
            requests.submit_request(
                session,
                actor=org["jdoe"],
                request_type="new_token",
                form=HARDWARE,
                settings=org.settings,
            )
            raise RuntimeError("the caller failed after submitting")

    with org.database.read() as session:
        assert session.scalars(select(ProvisioningRequest)).all() == []
        assert session.scalars(select(HumanTask)).all() == []


# -- decisions ------------------------------------------------------------------


def test_reject_ends_the_request_at_once_and_keeps_the_comment(org):
    request_id = org.new_hardware("jdoe")

    org.decide("anna", request_id, "reject", comment="Use the app instead", note="cost")

    request = org.request(request_id)
    assert (request.status, request.current_step) == ("rejected", "")
    assert request.comment_to_user == "Use the app instead"
    assert org.open_tasks(request_id) == []
    view = org.view("jdoe", request_id)
    assert [e.text for e in view.timeline][-2:] == [
        "Rejected by anna",
        "Request rejected",
    ]
    assert view.comments[-1].comment == "Use the app instead"


def test_reject_and_cancel_need_a_comment(org):
    request_id = org.new_hardware("jdoe")
    task_id = org.task(request_id)

    for decision, verb in (("reject", "rejecting"), ("cancel", "cancelling")):
        with pytest.raises(ValidationFailed) as failed:
            with org.database.write() as session:
                requests.decide(session, org["anna"], task_id, decision=decision)
        assert failed.value.field_errors == {
            "comment": f"Give the requester a reason for {verb} the request in the "
            "comment."
        }
    with pytest.raises(ValidationFailed) as failed:
        with org.database.write() as session:
            requests.decide(session, org["anna"], task_id, decision="maybe")
    assert failed.value.field_errors == {
        "decision": "Decision must be one of: approve, reject, cancel, defer."
    }
    assert org.task(request_id) == task_id


def test_defer_saves_comment_and_note_and_keeps_the_task_open(org):
    request_id = org.new_hardware("jdoe")
    task_id = org.task(request_id)

    org.decide("anna", request_id, "defer", comment="Waiting for budget", note="Q3")

    assert org.task(request_id) == task_id
    with org.database.read() as session:
        task = session.get(HumanTask, task_id)
        assert (task.status, task.saved_data) == (
            "open",
            {"comment": "Waiting for budget", "note": "Q3"},
        )
    request = org.request(request_id)
    assert (request.status, request.current_step) == ("pending", "Approve request")
    staff = org.view("marc", request_id)
    assert staff.timeline[-1].text == "Deferred by anna: approval kept open"
    assert (staff.timeline[-1].comment, staff.timeline[-1].note) == (
        "Waiting for budget",
        "Q3",
    )
    mine = org.view("jdoe", request_id)
    assert mine.timeline[-1].text == "Deferred by anna: approval kept open"
    assert (mine.timeline[-1].comment, mine.timeline[-1].note) == ("", None)


def test_approver_cancel_ends_the_request(org):
    request_id = org.new_software("jdoe")

    org.decide("anna", request_id, "cancel", comment="Duplicate of your other request")

    request = org.request(request_id)
    assert (request.status, request.outcome) == ("cancelled", "Cancelled by anna.")
    assert request.comment_to_user == "Duplicate of your other request"
    assert org.open_tasks(request_id) == []


def test_notes_are_for_staff_and_never_shown_to_the_requester(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id, comment="Looks fine", note="Checked with HR")

    mine = org.view("jdoe", request_id)
    staff = org.view("marc", request_id)

    assert mine.is_staff is False
    assert mine.notes == []
    assert all(e.note is None for e in mine.timeline)
    assert "note" not in mine.instance.data
    assert mine.instance.history == []
    assert [c.comment for c in mine.comments] == ["Looks fine"]
    assert staff.is_staff is True
    assert [n.note for n in staff.notes] == ["Checked with HR"]
    assert staff.instance.data["note"] == "Checked with HR"


def test_requester_who_holds_a_role_still_sees_no_notes_on_own_request(org):
    request_id = org.new_hardware("anna")
    org.decide("marc", request_id, comment="ok", note="Anna asked twice")

    mine = org.view("anna", request_id)

    assert mine.is_staff is False
    assert mine.notes == []
    assert "Anna asked twice" not in repr(mine.timeline)


def test_approver_may_change_the_model_within_the_token_class(org):
    request_id = org.new_hardware("jdoe")

    org.decide("anna", request_id, token_model="SID800", comment="SID700 is sold out")
    org.decide("marc", request_id)
    org.distribute("lucia", request_id, serial_number="E-800-1", carrier="courier")

    request = org.request(request_id)
    assert request.token_model == "SID800"
    assert request.status == "completed"
    assert request.outcome == "Token E-800-1 (SID800) shipped by courier."
    assert "Approved by anna; token model set to SID800" in [
        e.text for e in org.view("jdoe", request_id).timeline
    ]


def test_approver_may_not_change_hardware_to_software(org):
    request_id = org.new_hardware("jdoe")
    task_id = org.task(request_id)
    expected = {
        "token_model": "Token model 'APP' is a software token, but this request is "
        "for a hardware token; choose one of: SID700, SID800."
    }

    with pytest.raises(ValidationFailed) as through_requests:
        org.decide("anna", request_id, token_model="APP")
    with pytest.raises(ValidationFailed) as through_engine:
        org.complete("anna", task_id, {"decision": "approve", "token_model": "APP"})
    with pytest.raises(ValidationFailed) as emptied:
        org.complete("anna", task_id, {"decision": "approve", "token_model": ""})

    assert through_requests.value.field_errors == expected
    assert through_engine.value.field_errors == expected
    assert emptied.value.field_errors == {
        "token_model": "Token model may not be emptied; leave the field out to keep "
        "SID700."
    }
    assert org.task(request_id) == task_id
    assert org.request(request_id).token_model == "SID700"


def test_request_without_token_takes_no_token_model(org):
    request_id = org.submit(
        "jdoe", "group_membership", group_name=GROUP, justification="On-call duty"
    )

    with pytest.raises(ValidationFailed) as failed:
        org.decide("anna", request_id, token_model="SID700")

    assert failed.value.field_errors == {
        "token_model": f"Request {request_id} is not for a token; leave the token "
        "model empty."
    }


def test_distribute_refuses_a_serial_that_is_not_available(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)
    org.decide("marc", request_id)

    for serial, message in (
        (
            "",
            "Serial number is required; choose one of: E-700-1, E-700-2, E-700-3, "
            "E-700-4, E-700-5.",
        ),
        (
            "A-700-1",
            "Token 'A-700-1' is not an available SID700 token in your scope; choose "
            "one of: E-700-1, E-700-2, E-700-3, E-700-4, E-700-5.",
        ),
    ):
        with pytest.raises(ValidationFailed) as failed:
            org.distribute("lucia", request_id, serial_number=serial, carrier="dhl")
        assert failed.value.field_errors == {"serial_number": message}
    assert org.request(request_id).status == "pending"


def test_decide_refuses_a_task_that_is_no_approval_step(org):
    request_id = org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")
    task_id = org.task(request_id)

    with pytest.raises(ValidationFailed) as failed:
        with org.database.write() as session:
            requests.decide(session, org["lucia"], task_id, decision="approve")

    assert str(failed.value) == (
        f"Task 'Distribute hardware token' of request {request_id} is not a step of "
        "approval; open the request to see what it waits for."
    )


# -- cancelling ---------------------------------------------------------------------


def test_requester_cancels_a_pending_request(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id)

    with org.database.write() as session:
        requests.cancel_request(session, org["jdoe"], request_id, "")

    request = org.request(request_id)
    assert (request.status, request.current_step) == ("cancelled", "")
    assert request.outcome == "Cancelled by jdoe: Cancelled by the requester"
    assert org.open_tasks(request_id) == []


def test_cancel_is_refused_once_completed_and_to_others(org):
    request_id = org.submit(
        "jdoe", "group_membership", group_name=GROUP, justification="On-call duty"
    )

    with pytest.raises(NotFound):
        with org.database.write() as session:
            requests.cancel_request(session, org["claire"], request_id, "mine now")
    with pytest.raises(PermissionDenied) as approver:
        with org.database.write() as session:
            requests.cancel_request(session, org["anna"], request_id, "tidy up")
    assert str(approver.value) == (
        f"You may not cancel request {request_id}; only its requester or an "
        "administrator of security domain 'acme/emea/paris' can."
    )

    org.decide("anna", request_id)
    with pytest.raises(InstanceNotActive) as ended:
        with org.database.write() as session:
            requests.cancel_request(session, org["jdoe"], request_id, "changed mind")
    assert str(ended.value) == (
        f"Request {request_id} is already completed; only a pending request can be "
        "cancelled."
    )


def test_administrator_in_scope_may_cancel(org):
    request_id = org.new_hardware("jdoe")

    with pytest.raises(NotFound):
        with org.database.write() as session:
            requests.cancel_request(session, org["john"], request_id, "tidy")
    with org.database.write() as session:
        requests.cancel_request(session, org["emma"], request_id, "Leaving the company")

    assert org.request(request_id).outcome == "Cancelled by emma: Leaving the company"


# -- following a request ------------------------------------------------------------


def test_view_shows_who_holds_the_request_now(org):
    request_id = org.new_hardware("jdoe")

    first = org.view("jdoe", request_id)
    org.decide("anna", request_id)
    second = org.view("jdoe", request_id)
    org.decide("marc", request_id)
    third = org.view("admin", request_id)

    assert first.current_step == "Approve request"
    assert [h.people for h in first.holders] == [("anna", "hugo", "marc")]
    assert first.holders[0].text == (
        "request approvers of acme/emea/paris (Approve request)"
    )
    assert [h.people for h in second.holders] == [("hugo", "marc")]
    assert third.current_step == "Distribute hardware token"
    assert [h.people for h in third.holders] == [("lucia",)]
    assert [t.task_spec for t in third.my_tasks] == []
    assert [t.task_spec for t in org.view("lucia", request_id).my_tasks] == [
        requests.HARDWARE_STEP
    ]
    assert first.can_cancel is True
    assert org.view("marc", request_id).can_cancel is False


def test_timeline_reads_as_steps(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id, comment="ok")
    org.decide("marc", request_id)
    org.distribute(
        "lucia",
        request_id,
        serial_number="E-700-4",
        carrier="dhl",
        tracking_number="JD1",
    )

    view = org.view("jdoe", request_id)

    assert [e.text for e in view.timeline] == [
        "New or additional token submitted by jdoe",
        "Waiting for approval (step 1)",
        "Approved by anna",
        "Waiting for approval (step 2)",
        "Approved by marc",
        "Waiting for distribution of the hardware token",
        "Token E-700-4 sent by DHL, tracking number JD1 (recorded by lucia)",
        "Request completed",
    ]
    assert view.delivery == {
        "serial_number": "E-700-4",
        "carrier": "dhl",
        "tracking_number": "JD1",
    }
    assert (
        view.request.outcome
        == "Token E-700-4 (SID700) shipped by DHL, tracking number JD1."
    )


def test_activation_link_is_shown_to_the_requester_not_to_approvers(org):
    request_id = org.new_software("jdoe")
    org.decide("anna", request_id)
    org.distribute("lucia", request_id, delivery_method="qr_in_person")

    mine = org.view("jdoe", request_id)
    approver = org.view("marc", request_id)
    distributor = org.view("lucia", request_id)

    assert mine.request.status == "completed"
    assert mine.delivery["activation_link"].startswith(org.settings.base_url)
    assert distributor.delivery["activation_link"] == mine.delivery["activation_link"]
    assert "activation_link" not in approver.delivery
    assert "activation_link" not in approver.instance.data


def test_failed_service_keeps_the_request_pending_with_a_visible_incident(org):
    request_id = org.new_software("jdoe")
    org.decide("anna", request_id)
    # The software token profile is retired while the request waits.
    with org.database.write() as session:
        model = session.scalars(select(TokenModel).where(TokenModel.code == "APP"))
        model.one().active = False

    org.distribute("lucia", request_id, delivery_method="qr_in_person")

    request = org.request(request_id)
    assert request.status == "pending"
    assert request.current_step == "Issue software token (failed)"
    assert request.outcome == (
        "The step 'Issue software token' failed: Unknown token model 'APP'; known "
        "models: SID700, SID800; correct the token model or the user, then retry "
        "the incident. The request waits until an administrator retries the step "
        "or the request is cancelled."
    )
    view = org.view("jdoe", request_id)
    assert [i.element_id for i in view.incidents] == ["issue_software_token"]
    assert view.timeline[-1].text == (
        "The step 'issue software token' failed; the request waits until an "
        "administrator retries it"
    )

    with org.database.write() as session:
        requests.cancel_request(session, org["admin"], request_id, "Profile retired")
    assert org.request(request_id).status == "cancelled"


GENERIC_DISTRIBUTION = {"shipping_address": SHIPPING_ADDRESS, "carrier": "dhl"}


@pytest.mark.parametrize(
    ("serial", "message"),
    [
        (
            "E-700-1",
            "Token 'E-700-1' is not an available SID800 token in your scope; "
            "choose one of: E-800-1, E-800-2, E-800-3.",
        ),
        (
            "NO-SUCH",
            "Token 'NO-SUCH' is not an available SID800 token in your scope; "
            "choose one of: E-800-1, E-800-2, E-800-3.",
        ),
        (
            "J-SOON",
            "Token 'J-SOON' is not an available SID800 token in your scope; "
            "choose one of: E-800-1, E-800-2, E-800-3.",
        ),
    ],
    ids=["another model", "unknown", "handed out"],
)
def test_generic_task_form_refuses_a_serial_that_cannot_be_assigned(
    org, serial, message
):
    request_id = org.new_hardware("jdoe", model="SID800")
    org.decide("anna", request_id)
    org.decide("marc", request_id)
    task_id = org.task(request_id, requests.HARDWARE_STEP)

    with pytest.raises(ValidationFailed) as refused:
        org.complete(
            "lucia", task_id, {"serial_number": serial, **GENERIC_DISTRIBUTION}
        )

    assert refused.value.field_errors == {"serial_number": message}
    assert str(refused.value).startswith(
        "The distribution has errors; correct them and submit again."
    )
    request = org.request(request_id)
    assert (request.status, request.current_step) == (
        "pending",
        "Distribute hardware token",
    )
    assert "delivery" not in request.details
    assert org.open_tasks(request_id) == [(task_id, requests.HARDWARE_STEP)]
    assert org.view("lucia", request_id).incidents == []
    with org.database.read() as session:
        assert session.get(HumanTask, task_id).completed_by is None
        token = session.scalars(select(Token).where(Token.serial == "E-700-1")).one()
        assert (token.state, token.owner) == ("available", None)


def test_generic_task_form_ships_an_available_serial_of_the_model(org):
    request_id = org.new_hardware("jdoe", model="SID800")
    org.decide("anna", request_id)
    org.decide("marc", request_id)

    org.complete(
        "lucia",
        org.task(request_id),
        {"serial_number": " E-800-2 ", **GENERIC_DISTRIBUTION},
    )

    request = org.request(request_id)
    assert (request.status, request.outcome) == (
        "completed",
        "Token E-800-2 (SID800) shipped by DHL.",
    )


def test_request_expires_when_the_timeout_passes_without_a_decision(org):
    # A timeout of zero is already over when the approval step starts, so the
    # interrupting timer withdraws the step at once.
    org.settings = dataclasses.replace(org.settings, auto_cancel_after="PT0S")
    request_id = org.new_hardware("jdoe")

    request = org.request(request_id)
    assert (request.status, request.current_step) == ("expired", "")
    assert request.outcome == "No approver decided in time, so the request expired."
    assert org.open_tasks(request_id) == []
    assert org.view("jdoe", request_id).timeline[-1].text == (
        "Request expired: no decision in time"
    )


def test_self_service_account_request(org):
    form = {
        "username": "nnew",
        "display_name": "Nora New",
        "email": "nora@example.org",
        "domain_path": "acme/emea/paris",
        "justification": "Starts on Monday in the Paris office",
    }
    with org.database.write() as session:
        request_id = requests.submit_account_request(
            session, form=form, settings=org.settings
        ).id
    with pytest.raises(ConflictError):
        with org.database.write() as session:
            requests.submit_account_request(
                session, form={**form, "username": "nora"}, settings=org.settings
            )
    with pytest.raises(ValidationFailed) as taken:
        with org.database.write() as session:
            requests.submit_account_request(
                session,
                form={**form, "username": "jdoe", "domain_path": "acme/mars"},
                settings=org.settings,
            )

    assert org.request(request_id).requester == "self-service:nora@example.org"
    assert taken.value.field_errors == {
        "username": "User name 'jdoe' is taken; choose another.",
        "domain_path": "Security domain 'acme/mars' does not exist; check the path, "
        "such as acme/emea/paris.",
    }
    org.decide("hugo", request_id)
    assert org.request(request_id).outcome == "Account 'nnew' created."


def test_submit_on_behalf_needs_an_administrator_in_scope(org):
    with org.database.write() as session:
        request = requests.submit_request(
            session,
            actor=org["emma"],
            request_type="new_token",
            form=HARDWARE,
            settings=org.settings,
            on_behalf_of="jdoe",
        )
        request_id = request.id
    with pytest.raises(PermissionDenied) as refused:
        with org.database.write() as session:
            requests.submit_request(
                session,
                actor=org["emma"],
                request_type="new_token",
                form=HARDWARE,
                settings=org.settings,
                on_behalf_of="emily",
            )

    assert str(refused.value) == (
        "You are not an administrator of security domain 'acme/americas', so you "
        "may not submit requests for emily."
    )
    request = org.request(request_id)
    assert (request.requester, request.details["submitted_by"]) == ("jdoe", "emma")
    assert org.view("jdoe", request_id).timeline[0].text == (
        "New or additional token submitted by jdoe (entered by emma)"
    )


def test_requests_commands_submit_decide_show_and_cancel(org, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", org.database.url.render_as_string(False))
    runner = CliRunner()

    submitted = runner.invoke(
        requests_group,
        [
            "submit",
            "group_membership",
            "--user",
            "jdoe",
            "--field",
            f"group_name={GROUP}",
            "--field",
            "justification=On-call duty from May",
        ],
    )
    (request_id,) = request_ids(org)
    task_id = org.task(request_id)
    refused = runner.invoke(
        requests_group, ["decide", task_id, "approve", "--user", "jdoe"]
    )
    deferred = runner.invoke(
        requests_group,
        ["decide", task_id, "defer", "--user", "anna", "--note", "ask HR"],
    )
    shown = runner.invoke(requests_group, ["show", str(request_id), "--user", "marc"])
    listed = runner.invoke(requests_group, ["list", "--user", "jdoe"])
    cancelled = runner.invoke(
        requests_group, ["cancel", str(request_id), "--user", "jdoe"]
    )

    assert (
        submitted.output
        == f"Request {request_id} submitted: pending, Approve request.\n"
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: You started request-")
    assert deferred.exit_code == 0, deferred.output
    assert "Held by:   request approvers of acme/emea/paris (Approve request): " in (
        shown.output
    )
    assert "      note (staff only): ask HR" in shown.output
    assert "jdoe            pending    Approve request" in listed.output
    assert cancelled.output == f"Request {request_id} cancelled.\n"
    assert org.request(request_id).status == "cancelled"


def request_ids(org: Org) -> list[int]:
    with org.database.read() as session:
        return list(session.scalars(select(ProvisioningRequest.id)))


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        (
            {"status": "open"},
            {
                "status": "Status must be one of: pending, completed, rejected, "
                "cancelled, expired, failed."
            },
        ),
        (
            {"request_type": "laptop"},
            {
                "request_type": "Request type must be one of: new_token, "
                "replace_expiring_token, replace_lost_token, ondemand_tokencode, "
                "group_membership, new_account."
            },
        ),
        (
            {"limit": 0, "offset": -1},
            {
                "limit": "Limit must be between 1 and 500.",
                "offset": "Offset must be between 0 and 1000000000.",
            },
        ),
    ],
)
def test_list_requests_refuses_bad_queries(org, query, errors):
    with org.database.read() as session:
        with pytest.raises(ValidationFailed) as failed:
            requests.list_requests(session, org["jdoe"], **query)

    assert failed.value.field_errors == errors


def test_second_distribution_of_one_step_is_told_who_was_first(org):
    request_id = org.new_hardware("jdoe")
    org.decide("hugo", request_id, "approve")
    org.decide("anna", request_id, "approve")
    task_id = org.task(request_id)
    org.distribute("lucia", request_id, serial_number="E-700-1", carrier="dhl")

    # The same serial is no longer available, but what matters to the second
    # submission is that the step was already taken.
    with pytest.raises(TaskAlreadyCompleted, match="already completed by lucia at "):
        with org.database.write() as session:
            requests.distribute(
                session,
                actor_for(session, "lucia"),
                task_id,
                serial_number="E-700-1",
                carrier="dhl",
                settings=org.settings,
            )


def test_distribution_reports_every_bad_field_at_once(org):
    request_id = org.new_hardware("jdoe", model="SID800")
    org.decide("anna", request_id)
    org.decide("marc", request_id)

    with pytest.raises(ValidationFailed) as refused:
        org.distribute("lucia", request_id, serial_number="", carrier="pigeon")

    assert refused.value.field_errors == {
        "serial_number": "Serial number is required; choose one of: E-800-1, "
        "E-800-2, E-800-3.",
        "carrier": "Carrier must be one of: dhl, ups, fedex, postal_service, courier, "
        "hand_delivery.",
    }
    assert org.request(request_id).current_step == "Distribute hardware token"
