"""Timers: stored with their due time, fired by the worker once, across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers_engine import (
    APPROVER,
    REQUESTER,
    actions,
    complete,
    count,
    deploy,
    open_tasks,
    start,
    task_of,
    wait_until,
)
from sqlalchemy import select

from engine import instances, services
from engine.db import Database
from engine.errors import ServiceError
from engine.identity import SYSTEM_ACTOR
from engine.models import HistoryEntry, HumanTask, ProcessInstance, Timer
from engine.worker import Worker, fire_due_timers


@pytest.fixture
def waiting_on_timer(database) -> int:
    """An instance whose first task is done and which now waits one second."""
    deploy(database, "engine_timer.bpmn")
    instance_id = start(database, "engine_timer")
    complete(database, task_of(database, instance_id, "before_timer").id, APPROVER)
    return instance_id


def timers(database, instance_id) -> list[Timer]:
    with database.read() as session:
        rows = list(
            session.scalars(select(Timer).where(Timer.instance_id == instance_id))
        )
        session.expunge_all()
        return rows


def test_waiting_timer_is_stored_with_its_due_time(database, waiting_on_timer):
    (timer,) = timers(database, waiting_on_timer)
    with database.read() as session:
        completed_at = session.scalars(
            select(HumanTask.completed_at).where(HumanTask.task_spec == "before_timer")
        ).one()

    assert (timer.element_id, timer.status, timer.fired_at) == (
        "wait_a_second",
        "waiting",
        None,
    )
    assert timer.due_at.tzinfo is not None
    assert timedelta(0) < timer.due_at - completed_at <= timedelta(seconds=2)
    assert open_tasks(database, waiting_on_timer) == []


def test_timer_is_not_fired_before_it_is_due(database, settings, waiting_on_timer):
    (timer,) = timers(database, waiting_on_timer)

    fired = fire_due_timers(database, settings, now=timer.due_at - timedelta(1))

    assert fired == 0
    assert [t.status for t in timers(database, waiting_on_timer)] == ["waiting"]


def test_due_timer_fires_and_the_instance_runs_on(database, settings, waiting_on_timer):
    (timer,) = timers(database, waiting_on_timer)
    wait_until(timer.due_at)

    assert fire_due_timers(database, settings) == 1

    (fired,) = timers(database, waiting_on_timer)
    assert (fired.status, fired.fired_at is not None) == ("fired", True)
    assert [t.task_spec for t in open_tasks(database, waiting_on_timer)] == [
        "after_timer"
    ]
    assert actions(database, waiting_on_timer)[-2:] == ["timer_fired", "task_created"]


def test_timer_fires_after_a_restart_and_only_once(
    database, settings, waiting_on_timer
):
    (timer,) = timers(database, waiting_on_timer)
    url = database.url.render_as_string(hide_password=False)
    database.dispose()
    wait_until(timer.due_at)

    restarted = Database(url)
    try:
        Worker(restarted, settings).run(install_signal_handlers=False, max_passes=1)
        Worker(restarted, settings).run(install_signal_handlers=False, max_passes=1)
        assert fire_due_timers(restarted, settings) == 0
    finally:
        restarted.dispose()

    assert [t.status for t in timers(database, waiting_on_timer)] == ["fired"]
    assert (
        count(
            database,
            HistoryEntry,
            HistoryEntry.instance_id == waiting_on_timer,
            HistoryEntry.action == "timer_fired",
        )
        == 1
    )
    assert [t.task_spec for t in open_tasks(database, waiting_on_timer)] == [
        "after_timer"
    ]


def test_fire_timer_twice_fires_once(database, settings, waiting_on_timer):
    (timer,) = timers(database, waiting_on_timer)
    wait_until(timer.due_at)

    with database.write() as session:
        first = instances.fire_timer(session, timer.id, settings=settings)
    with database.write() as session:
        second = instances.fire_timer(session, timer.id, settings=settings)

    assert (first, second) == (True, False)


def test_cancelling_the_instance_cancels_its_timers(database, waiting_on_timer):
    with database.write() as session:
        instances.cancel_instance(
            session, waiting_on_timer, actor=REQUESTER, reason="Changed my mind"
        )

    assert [(t.status, t.fired_at) for t in timers(database, waiting_on_timer)] == [
        ("cancelled", None)
    ]
    with database.read() as session:
        assert instances.due_timers(session, datetime.now(UTC) + timedelta(1)) == []


def test_instance_completes_after_the_timer(database, settings, waiting_on_timer):
    (timer,) = timers(database, waiting_on_timer)
    wait_until(timer.due_at)
    fire_due_timers(database, settings)

    status = complete(
        database, task_of(database, waiting_on_timer, "after_timer").id, APPROVER
    )

    assert status == "completed"


REMIND_TOPIC = "engine_test_remind"


@pytest.fixture
def failing_reminder(database):
    """An instance whose reminder fails while its escalation timer still waits."""
    calls = []

    def remind(call: services.ServiceCall) -> None:
        calls.append(call.element_id)
        if len(calls) == 1:
            raise ServiceError("The mail relay is down; retry once it is back.")

    services.register(REMIND_TOPIC)(remind)
    deploy(database, "engine_timer_incident.bpmn")
    instance_id = start(
        database,
        "engine_timer_incident",
        variables={"reminder_after": "PT1S", "escalate_after": "PT2S"},
    )
    yield instance_id
    services.unregister(REMIND_TOPIC)


def by_element(database, instance_id) -> dict[str, str]:
    return {t.element_id: t.status for t in timers(database, instance_id)}


def test_timers_keep_waiting_through_an_incident_and_fire_after_the_retry(
    database, settings, failing_reminder
):
    due = {t.element_id: t.due_at for t in timers(database, failing_reminder)}
    wait_until(due["reminder"])

    fire_due_timers(database, settings)

    assert status_of(database, failing_reminder) == "incident"
    assert by_element(database, failing_reminder) == {
        "reminder": "fired",
        "escalation": "waiting",
    }

    # Due, but the instance is in an incident: the escalation waits for it.
    wait_until(due["escalation"])
    assert fire_due_timers(database, settings) == 0
    with database.read() as session:
        assert instances.due_timers(session) == []

    with database.write() as session:
        instances.retry_incident(session, failing_reminder, actor=SYSTEM_ACTOR)

    # The retry runs the instance on, and the overdue escalation fires with it,
    # once: the worker finds nothing left to fire.
    assert status_of(database, failing_reminder) == "running"
    assert fire_due_timers(database, settings) == 0
    assert by_element(database, failing_reminder) == {
        "reminder": "fired",
        "escalation": "fired",
    }
    assert sorted(t.task_spec for t in open_tasks(database, failing_reminder)) == [
        "approve",
        "escalated",
    ]
    assert (
        count(
            database,
            HistoryEntry,
            HistoryEntry.instance_id == failing_reminder,
            HistoryEntry.action == "timer_fired",
        )
        == 2
    )


def test_cancelling_an_instance_in_an_incident_cancels_its_waiting_timers(
    database, settings, failing_reminder
):
    due = {t.element_id: t.due_at for t in timers(database, failing_reminder)}
    wait_until(due["reminder"])
    fire_due_timers(database, settings)

    with database.write() as session:
        instances.cancel_instance(
            session, failing_reminder, actor=REQUESTER, reason="Not needed any more"
        )

    assert by_element(database, failing_reminder) == {
        "reminder": "fired",
        "escalation": "cancelled",
    }


def status_of(database, instance_id) -> str:
    with database.read() as session:
        return session.get(ProcessInstance, instance_id).status
