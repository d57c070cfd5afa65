"""Incidents: failing scripts and service handlers stop the instance, retry resumes."""

from __future__ import annotations

import pytest
from helpers_engine import (
    APPROVER,
    REQUESTER,
    SECOND_APPROVER,
    actions,
    complete,
    count,
    deploy,
    open_tasks,
    start,
    task_of,
)
from sqlalchemy import select

from engine import instances, services
from engine.errors import InstanceNotActive, PermissionDenied, ServiceError
from engine.identity import ADMINISTRATOR, SYSTEM_ACTOR, Actor
from engine.models import HumanTask, Incident, ProcessInstance, SecurityDomain

TOPIC = "engine_test_ship"
ADMIN = Actor("root", "acme", ((ADMINISTRATOR, "acme"),))
APAC_ADMIN = Actor("yoshi", "acme/apac", ((ADMINISTRATOR, "acme/apac"),))


class Shipper:
    """A service handler that writes a row, then fails while ``failing`` is set."""

    def __init__(self):
        self.failing: Exception | None = ServiceError(
            "The shipping service is down; retry once it is back."
        )
        self.calls = 0

    def __call__(self, call: services.ServiceCall) -> None:
        self.calls += 1
        call.session.add(
            SecurityDomain(name=f"shipped{self.calls}", path=f"shipped{self.calls}")
        )
        call.session.flush()
        if self.failing is not None:
            raise self.failing
        call.data["shipped"] = call.data["serial_number"]


@pytest.fixture
def shipper():
    handler = Shipper()
    services.register(TOPIC)(handler)
    yield handler
    services.unregister(TOPIC)


def incidents(database, instance_id) -> list[Incident]:
    with database.read() as session:
        rows = list(
            session.scalars(
                select(Incident)
                .where(Incident.instance_id == instance_id)
                .order_by(Incident.id)
            )
        )
        session.expunge_all()
        return rows


def status(database, instance_id) -> str:
    with database.read() as session:
        return session.get(ProcessInstance, instance_id).status


def retry(database, instance_id, actor: Actor = ADMIN) -> str:
    with database.write() as session:
        return instances.retry_incident(session, instance_id, actor=actor).status


@pytest.fixture
def failed_script(database) -> int:
    deploy(database, "engine_script_fails.bpmn")
    instance_id = start(database, "engine_script_fails")
    task = task_of(database, instance_id, "enter")
    assert complete(database, task.id, APPROVER, {"divisor": 0}) == "incident"
    return instance_id


def test_failing_script_opens_an_incident_naming_element_and_error(
    database, failed_script
):
    (incident,) = incidents(database, failed_script)

    assert (incident.element_id, incident.status, incident.attempts) == (
        "divide",
        "open",
        1,
    )
    assert incident.error_type
    assert incident.message == (
        "ZeroDivisionError: integer division or modulo by zero "
        "(line 1: 'result = 100 // divisor')."
    )
    assert status(database, failed_script) == "incident"
    assert actions(database, failed_script)[-2:] == [
        "task_completed",
        "incident_opened",
    ]
    assert open_tasks(database, failed_script) == []


def test_completion_before_a_failing_script_is_kept(database, failed_script):
    with database.read() as session:
        enter = session.scalars(
            select(HumanTask).where(HumanTask.task_spec == "enter")
        ).one()
        assert (enter.status, enter.completed_by) == ("completed", "bob")
        view = instances.describe_instance(session, failed_script)
    assert "divide" in view.current_elements
    assert view.data["divisor"] == 0


def test_retry_without_a_fix_counts_the_attempt(database, failed_script):
    assert retry(database, failed_script) == "incident"

    assert [(i.status, i.attempts) for i in incidents(database, failed_script)] == [
        ("resolved", 1),
        ("open", 2),
    ]


def test_retry_is_refused_when_there_is_no_incident(database):
    deploy(database, "approval.bpmn")
    instance_id = start(database, "approval")

    with pytest.raises(InstanceNotActive) as err:
        retry(database, instance_id)

    assert str(err.value) == (
        f"Instance {instance_id} is running, not in an incident; there is nothing "
        "to retry."
    )


@pytest.fixture
def failed_service(database, shipper) -> int:
    deploy(database, "engine_service.bpmn")
    instance_id = start(database, "engine_service")
    task = task_of(database, instance_id, "prepare")
    assert complete(database, task.id, APPROVER, {"serial_number": "SN-7"}) == (
        "incident"
    )
    return instance_id


def test_failing_handler_opens_an_incident_with_its_message(database, failed_service):
    (incident,) = incidents(database, failed_service)

    assert (incident.element_id, incident.status) == ("ship", "open")
    assert incident.message == ("The shipping service is down; retry once it is back.")
    assert status(database, failed_service) == "incident"


def test_failing_handler_writes_are_rolled_back_but_the_completion_is_kept(
    database, failed_service, shipper
):
    assert shipper.calls == 1
    assert count(database, SecurityDomain) == 0
    with database.read() as session:
        prepare = session.scalars(
            select(HumanTask).where(HumanTask.task_spec == "prepare")
        ).one()
        assert (prepare.status, prepare.completed_by) == ("completed", "bob")
    assert "task_completed" in actions(database, failed_service)


def test_retry_after_the_fix_runs_the_handler_and_goes_on(
    database, failed_service, shipper
):
    shipper.failing = None

    assert retry(database, failed_service) == "running"

    assert [i.status for i in incidents(database, failed_service)] == ["resolved"]
    assert count(database, SecurityDomain) == 1
    (check,) = open_tasks(database, failed_service)
    assert check.task_spec == "check"
    with database.read() as session:
        data = instances.describe_instance(session, failed_service).data
    assert data["shipped"] == "SN-7"
    assert complete(database, check.id, SECOND_APPROVER) == "completed"


def test_handler_crash_is_an_incident_too(database, shipper):
    shipper.failing = KeyError("serial_number")
    deploy(database, "engine_service.bpmn")
    instance_id = start(database, "engine_service")

    complete(database, task_of(database, instance_id, "prepare").id, APPROVER, {})

    (incident,) = incidents(database, instance_id)
    assert incident.element_id == "ship"
    assert incident.message == "KeyError: 'serial_number'"
    assert count(database, SecurityDomain) == 0


def test_cancelling_an_instance_in_incident_resolves_it(database, failed_service):
    with database.write() as session:
        instances.cancel_instance(
            session, failed_service, actor=REQUESTER, reason="Given up"
        )

    (incident,) = incidents(database, failed_service)
    assert (incident.status, incident.resolved_by) == ("resolved", "alice (cancelled)")
    assert status(database, failed_service) == "cancelled"


@pytest.mark.parametrize(
    "actor",
    [REQUESTER, APPROVER, APAC_ADMIN],
    ids=["requester", "approver", "administrator of another domain"],
)
def test_retry_is_refused_to_anyone_but_an_administrator_in_scope(
    database, failed_service, shipper, actor
):
    shipper.failing = None

    with pytest.raises(PermissionDenied) as err:
        retry(database, failed_service, actor)

    assert str(err.value) == (
        f"You may not retry the failed step of instance {failed_service}; only an "
        "administrator of security domain 'acme/emea/paris' can, once the cause "
        "is fixed. Nothing was changed."
    )
    assert shipper.calls == 1
    assert status(database, failed_service) == "incident"
    assert [i.status for i in incidents(database, failed_service)] == ["open"]
    assert "incident_retried" not in actions(database, failed_service)


def test_the_system_retries_like_an_administrator(database, failed_service, shipper):
    shipper.failing = None

    assert retry(database, failed_service, SYSTEM_ACTOR) == "running"

    (incident,) = incidents(database, failed_service)
    assert incident.resolved_by == "system (retried)"
    assert shipper.calls == 2


MULTI_INSTANCE_FAILS = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs_mi"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="engine_mi_fails" name="Multi-instance fails" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:userTask id="review_each" name="Review each"
        camunda:candidateGroups="request_approver">
      <bpmn:multiInstanceLoopCharacteristics>
        <bpmn:loopCardinality>100 // divisor</bpmn:loopCardinality>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:userTask>
    <bpmn:endEvent id="done" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review_each" />
    <bpmn:sequenceFlow id="f2" sourceRef="review_each" targetRef="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_failing_multi_instance_expression_names_its_element(database):
    deploy(database, ("engine_mi_fails.bpmn", MULTI_INSTANCE_FAILS))

    instance_id = start(database, "engine_mi_fails", variables={"divisor": 0})

    (incident,) = incidents(database, instance_id)
    assert (incident.element_id, incident.status) == ("review_each", "open")
    assert incident.message == (
        "Error evaluating expression '100 // divisor': ZeroDivisionError: integer "
        "division or modulo by zero."
    )
    with database.read() as session:
        last = instances.describe_instance(session, instance_id).history[-1].message
    assert last == (
        "Step 'review_each' failed: Error evaluating expression '100 // divisor': "
        "ZeroDivisionError: integer division or modulo by zero."
    )
