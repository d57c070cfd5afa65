"""Separation of duties and scope, through the request API and the engine API.

The rules live in :func:`engine.instances.check_may_work`; these tests make
sure they hold for every way into a provisioning request: the inbox,
:func:`engine.provisioning.requests.decide`/``distribute``, and a direct call
of :func:`engine.instances.complete_task` that bypasses both.
"""

from __future__ import annotations

import pytest
from helpers_provisioning import SHIPPING_ADDRESS, Org, make_org

from engine.errors import NotFound, PermissionDenied
from engine.provisioning import requests


@pytest.fixture
def org(database, settings) -> Org:
    return make_org(database, settings)


def own_request_message(org: Org, request_id: int, task: str) -> str:
    return (
        f"You started request-{request_id}, so you may not work "
        f"its task '{task}': separation of duties requires someone else to do it."
    )


def test_requester_who_is_an_approver_cannot_approve_own_request(org):
    request_id = org.new_hardware("anna")
    task_id = org.task(request_id)
    expected = own_request_message(org, request_id, "Approve request")

    assert task_id not in org.inbox("anna")
    assert task_id in org.inbox("marc")
    with pytest.raises(PermissionDenied) as through_requests:
        org.decide("anna", request_id, "approve")
    with pytest.raises(PermissionDenied) as through_engine:
        org.complete("anna", task_id, {"decision": "approve"})

    assert str(through_requests.value) == expected
    assert str(through_engine.value) == expected
    assert org.task(request_id) == task_id
    assert org.request(request_id).status == "pending"


def test_same_approver_cannot_take_two_approval_steps(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id, "approve")
    second = org.task(request_id)
    expected = (
        "You already completed an earlier 'Approve request' step of "
        f"request-{request_id}; a different person must take this step."
    )

    assert second not in org.inbox("anna")
    assert second in org.inbox("marc")
    with pytest.raises(PermissionDenied) as through_requests:
        org.decide("anna", request_id, "approve")
    with pytest.raises(PermissionDenied) as through_engine:
        org.complete("anna", second, {"decision": "approve"})
    assert str(through_requests.value) == expected
    assert str(through_engine.value) == expected

    org.decide("marc", request_id, "approve")
    assert [s for _, s in org.open_tasks(request_id)] == [requests.HARDWARE_STEP]


def test_deferring_is_not_a_decision_so_the_same_approver_may_decide_later(org):
    request_id = org.new_hardware("jdoe")
    org.decide("anna", request_id, "defer", comment="Asking your manager")
    org.decide("anna", request_id, "approve")

    assert org.approval_count(request_id) == 2
    assert org.task(request_id) not in org.inbox("anna")


def test_distributor_may_not_distribute_own_request(org):
    request_id = org.new_hardware("lucia")
    org.decide("anna", request_id, "approve")
    org.decide("marc", request_id, "approve")
    task_id = org.task(request_id, requests.HARDWARE_STEP)
    expected = own_request_message(org, request_id, "Distribute hardware token")

    assert task_id not in org.inbox("lucia")
    with pytest.raises(PermissionDenied) as through_requests:
        org.distribute("lucia", request_id, serial_number="E-700-1", carrier="dhl")
    with pytest.raises(PermissionDenied) as through_engine:
        org.complete(
            "lucia",
            task_id,
            {
                "serial_number": "E-700-1",
                "shipping_address": SHIPPING_ADDRESS,
                "carrier": "dhl",
            },
        )

    assert str(through_requests.value) == expected
    assert str(through_engine.value) == expected
    assert org.request(request_id).status == "pending"


def test_approver_of_another_branch_neither_sees_nor_completes(org):
    request_id = org.new_hardware("jdoe")
    task_id = org.task(request_id)
    expected = (
        f"You may not work task 'Approve request' of request-{request_id}: "
        "it needs the request_approver role for "
        "security domain 'acme/emea/paris', which you do not hold there."
    )

    assert org.inbox("john") == []
    with org.database.read() as session:
        assert requests.list_requests(session, org["john"], mine=False) == []
        with pytest.raises(NotFound) as hidden:
            requests.get_request(session, org["john"], request_id)
    assert str(hidden.value) == (
        f"Request {request_id} does not exist or is not yours to see; check the number."
    )
    with pytest.raises(PermissionDenied) as through_requests:
        org.decide("john", request_id, "approve")
    with pytest.raises(PermissionDenied) as through_engine:
        org.complete("john", task_id, {"decision": "reject", "comment": "no"})

    assert str(through_requests.value) == expected
    assert str(through_engine.value) == expected
    assert org.request(request_id).status == "pending"


def test_sub_domain_approver_does_not_reach_up_or_sideways(org):
    emily = org.submit(
        "emily",
        "new_token",
        token_class="software",
        token_model="APP",
        justification="Travelling to a customer next month",
    )
    paris = org.new_software("jdoe")

    assert org.task(paris) in org.inbox("hugo")
    assert org.task(emily) not in org.inbox("hugo")
    assert org.task(emily) in org.inbox("john")
    with pytest.raises(PermissionDenied):
        org.decide("hugo", emily, "approve")

    org.decide("hugo", paris, "approve")
    assert [s for _, s in org.open_tasks(paris)] == [requests.SOFTWARE_STEP]


def test_distributor_of_another_branch_cannot_distribute(org):
    request_id = org.new_software("jdoe")
    org.decide("anna", request_id, "approve")
    task_id = org.task(request_id, requests.SOFTWARE_STEP)

    assert task_id not in org.inbox("david")
    assert task_id in org.inbox("lucia")
    with pytest.raises(PermissionDenied):
        org.distribute("david", request_id)
    with pytest.raises(PermissionDenied):
        org.complete("david", task_id, {"delivery_method": "activation_email"})


def test_scope_lists_only_requests_of_covered_domains(org):
    paris = org.new_hardware("jdoe")
    americas = org.submit(
        "emily",
        "new_token",
        token_class="software",
        token_model="APP",
        justification="Travelling to a customer next month",
    )

    with org.database.read() as session:

        def ids(name: str, **kwargs) -> list[int]:
            actor = org.actor(name)
            return [r.id for r in requests.list_requests(session, actor, **kwargs)]

        assert ids("anna", mine=False) == [paris]
        assert ids("hugo", mine=False) == [paris]
        assert ids("john", mine=False) == [americas]
        assert sorted(ids("admin", mine=False)) == sorted([paris, americas])
        assert ids("jdoe", mine=False) == []
        assert ids("jdoe") == [paris]
        assert ids("emily", status="pending") == [americas]
        assert ids("emily", status="completed") == []
