"""Every request type through its row of the shipped workflow policy, end to end.

Each request is submitted through :mod:`engine.provisioning.requests` and its
steps are taken either through that module (``decide``/``distribute``) or
directly through :func:`engine.instances.complete_task`, the way a generic
task form would. The policy is then changed by redeploying an edited
decision table, which must affect new requests only.
"""

from __future__ import annotations

import pytest
from helpers_provisioning import BPMN_DIR, GROUP, SHIPPING_ADDRESS, Org, make_org
from lxml import etree
from sqlalchemy import select

from engine import deployments
from engine.errors import DeploymentError
from engine.models import DecisionDefinition, Timer, TimerStatus
from engine.provisioning import directory, requests
from engine.provisioning.inventory_models import OnDemandService, Token
from engine.provisioning.request_models import ProvisioningRequest

DMN_NS = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}
APPROVERS = {
    "acme/emea/paris": ["anna", "marc", "hugo"],
    "acme/apac": ["ken", "wei", "yuna"],
}
DISTRIBUTORS = {"acme/emea/paris": "lucia", "acme/apac": "sanjay"}


@pytest.fixture
def org(database, settings) -> Org:
    return make_org(database, settings)


def submit_case(org: Org, case: str) -> int:
    """Submit the request of one policy row; return its id."""
    if case == "new_hardware":
        return org.new_hardware("jdoe")
    if case == "new_hardware_apac":
        return org.submit(
            "arjun",
            "new_token",
            token_class="hardware",
            token_model="SID700",
            shipping_address="1 Marina Boulevard, Singapore",
            justification="Joining the Singapore office",
        )
    if case == "new_software":
        return org.new_software("jdoe")
    if case == "replace_expiring":
        return org.submit("jdoe", "replace_expiring_token", old_serial="J-SOON")
    if case == "replace_lost":
        return org.submit(
            "jdoe",
            "replace_lost_token",
            old_serial="J-LATER",
            justification="Left it on the train to Lyon",
        )
    if case == "ondemand":
        return org.submit(
            "jdoe",
            "ondemand_tokencode",
            delivery="sms",
            destination="+33 6 12 34 56 78",
        )
    if case == "group":
        return org.submit(
            "jdoe",
            "group_membership",
            group_name=GROUP,
            justification="I need the VPN for on-call duty",
        )
    if case == "new_account":
        with org.database.write() as session:
            return requests.submit_account_request(
                session,
                form={
                    "username": "nnew",
                    "display_name": "Nora New",
                    "email": "nora@example.org",
                    "domain_path": "acme/emea/paris",
                    "justification": "Starts on Monday in the Paris office",
                },
                settings=org.settings,
            ).id
    raise AssertionError(case)


#: case -> (approval steps, distribution task or None)
POLICY_ROWS = {
    "new_hardware_apac": (3, requests.HARDWARE_STEP),
    "new_hardware": (2, requests.HARDWARE_STEP),
    "new_software": (1, requests.SOFTWARE_STEP),
    "replace_expiring": (0, requests.HARDWARE_STEP),
    "replace_lost": (1, requests.HARDWARE_STEP),
    "ondemand": (1, None),
    "group": (1, None),
    "new_account": (1, None),
}


def approve(org: Org, request_id: int, approver: str, via: str) -> None:
    if via == "requests":
        org.decide(approver, request_id, "approve", comment=f"fine by {approver}")
    else:
        org.complete(
            approver,
            org.task(request_id, requests.APPROVE_STEP),
            {"decision": "approve", "comment": f"fine by {approver}"},
        )


def distribute(org: Org, request_id: int, step: str, serial: str, via: str) -> None:
    if step == requests.SOFTWARE_STEP:
        values = {"delivery_method": "activation_email"}
    else:
        values = {
            "serial_number": serial,
            "shipping_address": SHIPPING_ADDRESS,
            "carrier": "ups",
            "tracking_number": "1Z999",
        }
    distributor = DISTRIBUTORS[org.request(request_id).domain_path]
    if via == "requests":
        org.distribute(distributor, request_id, **values)
    else:
        org.complete(distributor, org.task(request_id, step), values)


@pytest.mark.parametrize("via", ["requests", "engine"])
@pytest.mark.parametrize("case", list(POLICY_ROWS))
def test_request_type_runs_its_policy_row_to_completion(org, case, via):
    steps, distribution = POLICY_ROWS[case]
    request_id = submit_case(org, case)
    domain = org.request(request_id).domain_path
    serial = "P-700-1" if domain == "acme/apac" else "E-700-2"

    assert org.approval_count(request_id) == steps
    for approver in APPROVERS[domain][:steps]:
        assert org.open_tasks(request_id)[0][1] == requests.APPROVE_STEP
        assert org.request(request_id).status == "pending"
        approve(org, request_id, approver, via)
    if distribution:
        assert [s for _, s in org.open_tasks(request_id)] == [distribution]
        distribute(org, request_id, distribution, serial, via)

    request = org.request(request_id)
    assert org.open_tasks(request_id) == []
    assert request.status == "completed", request.outcome
    assert request.current_step == ""
    assert request.ended_at is not None
    with org.database.read() as session:
        instance = session.get(ProvisioningRequest, request_id).instance
        assert instance.end_event == "request_completed"
        view = (
            requests.get_request(session, org.actor(request.requester), request_id)
            if (not request.requester.startswith("self-service:"))
            else None
        )
        tokens = list(
            session.scalars(select(Token).where(Token.request_id == request_id))
        )
        if distribution == requests.HARDWARE_STEP:
            (token,) = tokens
            assert (token.serial, token.owner, token.state) == (
                serial,
                request.requester,
                "shipped",
            )
            assert (token.carrier, token.tracking_number) == ("ups", "1Z999")
            assert (
                request.outcome
                == f"Token {serial} (SID700) shipped by UPS, tracking number 1Z999."
            )
        elif distribution == requests.SOFTWARE_STEP:
            (token,) = tokens
            assert (token.owner, token.state, token.model.code) == (
                "jdoe",
                "assigned",
                "APP",
            )
            link = view.delivery["activation_link"]
            assert link.startswith(f"{org.settings.base_url}/activate/")
            assert view.delivery["serial_number"] == token.serial
        if case == "replace_lost":
            old = session.scalars(select(Token).where(Token.serial == "J-LATER")).one()
            assert old.state == "disabled"
        if case == "ondemand":
            service = session.scalars(select(OnDemandService)).one()
            assert (service.username, service.delivery) == ("jdoe", "sms")
        if case == "group":
            assert directory.groups_of(session, "jdoe") == [GROUP]
        if case == "new_account":
            assert directory.find_user(session, "nnew").domain.path == "acme/emea/paris"


REJECTABLE = [
    (case, step)
    for case, (steps, _) in POLICY_ROWS.items()
    for step in range(1, steps + 1)
]


@pytest.mark.parametrize(("case", "step"), REJECTABLE)
def test_rejection_at_any_approval_step_ends_the_request_at_once(org, case, step):
    request_id = submit_case(org, case)
    approvers = APPROVERS[org.request(request_id).domain_path]
    for approver in approvers[: step - 1]:
        org.decide(approver, request_id, "approve")

    org.decide(approvers[step - 1], request_id, "reject", comment="Not in the budget")

    request = org.request(request_id)
    assert request.status == "rejected"
    assert request.comment_to_user == "Not in the budget"
    assert request.outcome == f"Rejected by {approvers[step - 1]}."
    assert org.open_tasks(request_id) == []
    with org.database.read() as session:
        instance = session.get(ProvisioningRequest, request_id).instance
        waiting = session.scalars(
            select(Timer).where(
                Timer.instance_id == instance.id, Timer.status == TimerStatus.WAITING
            )
        ).all()
        assert (instance.status, instance.end_event) == (
            "completed",
            "request_rejected",
        )
        assert waiting == []
        assert (
            session.scalars(select(Token).where(Token.request_id == request_id)).all()
            == []
        )


def policy_with_new_hardware_steps(steps: int) -> bytes:
    """Return the shipped policy with the general new hardware row changed."""
    root = etree.parse(str(BPMN_DIR / "workflow_policy.dmn"))
    (cell,) = root.xpath(
        "//dmn:rule[@id='rule_new_hardware']/dmn:outputEntry[1]/dmn:text",
        namespaces=DMN_NS,
    )
    assert cell.text == "2"
    cell.text = str(steps)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_redeployed_policy_applies_to_new_requests_only(org, tmp_path):
    running = org.new_hardware("jdoe")
    org.decide("anna", running, "approve")
    changed = tmp_path / "workflow_policy.dmn"
    changed.write_bytes(policy_with_new_hardware_steps(3))

    with org.database.write() as session:
        result = deployments.deploy(
            session,
            deployments.read_paths([changed]),
            deployed_by="admin",
            source="tests",
        )
    new = org.new_hardware("claire")

    versions = {(i.kind, i.key): (i.version, i.status) for i in result.items}
    assert versions[("decision", "workflow_policy")] == (2, "new")
    assert versions[("process", "new_token")] == (2, "new")
    assert org.approval_count(running) == 2
    assert org.approval_count(new) == 3

    org.decide("marc", running, "approve")
    assert [s for _, s in org.open_tasks(running)] == [requests.HARDWARE_STEP]

    for approver in ("anna", "marc"):
        org.decide(approver, new, "approve")
    assert [s for _, s in org.open_tasks(new)] == [requests.APPROVE_STEP]
    org.decide("hugo", new, "approve")
    assert [s for _, s in org.open_tasks(new)] == [requests.HARDWARE_STEP]

    org.distribute("lucia", running, serial_number="E-700-1", carrier="dhl")
    org.distribute("lucia", new, serial_number="E-700-3", carrier="dhl")
    assert org.request(running).status == "completed"
    assert org.request(new).status == "completed"


def test_domain_row_gives_apac_three_steps_and_leaves_lookalikes_alone(org):
    with org.database.write() as session:
        directory.create_domain(session, "acme/apacific", actor="system")
        directory.create_user(
            session,
            username="pat",
            display_name="Pat",
            email="pat@example.org",
            domain_path="acme/apacific",
            actor="system",
        )
    apac = submit_case(org, "new_hardware_apac")
    paris = org.new_hardware("jdoe")
    lookalike = org.new_hardware("pat")

    assert org.approval_count(apac) == 3
    assert org.approval_count(paris) == 2
    assert org.approval_count(lookalike) == 2


def test_the_product_refuses_a_policy_row_with_more_than_four_approval_steps(
    database,
):
    policy = BPMN_DIR / "workflow_policy.dmn"
    content = policy.read_bytes().replace(b"<text>3</text>", b"<text>5</text>", 1)

    with pytest.raises(DeploymentError) as caught, database.write() as session:
        deployments.deploy(
            session, [(policy.name, content)], deployed_by="designer", source="tests"
        )

    assert [str(p) for p in caught.value.problems] == [
        "workflow_policy.dmn, line 34, element 'rule_apac_new_hardware': output "
        "entry 5 of 'approval_steps' is not allowed: a request takes zero to four "
        "approval steps; write a value from 0 to 4."
    ]
    with database.read() as session:
        assert session.scalars(select(DecisionDefinition)).all() == []
