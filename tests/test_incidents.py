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
from engine.errors import InstanceNotActive, ServiceError
from engine.models import HumanTask, Incident, ProcessInstance, SecurityDomain

TOPIC = "engine_test_ship"


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


def retry(database, instance_id) -> str:
    with database.write() as session:
        return instances.retry_incident(session, instance_id, actor=APPROVER).status


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
