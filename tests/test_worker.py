"""The worker loop: one failing item neither stops it nor holds up the others."""

from __future__ import annotations

import logging

import pytest
from helpers_engine import APPROVER, complete, deploy, start, task_of, wait_until
from sqlalchemy import select

from engine import instances, worker
from engine.models import Timer
from engine.worker import Backoff, Worker, fire_due_timers, run_once


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """A fresh backoff for the worker, on a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(worker, "backoff", Backoff(clock=clock))
    return clock


@pytest.fixture
def jobs(monkeypatch) -> dict:
    """The worker's registered jobs, emptied for the test."""
    registered: dict = {}
    monkeypatch.setattr(worker, "_jobs", registered)
    return registered


def test_backoff_doubles_the_pause_up_to_the_longest():
    backoff = Backoff(first=30, longest=100, clock=Clock())

    pauses = [backoff.failed("Timer", 7) for _ in range(4)]

    assert pauses == [30, 60, 100, 100]


def test_backoff_puts_an_item_off_until_its_pause_has_passed():
    clock = Clock()
    backoff = Backoff(first=30, clock=clock)
    backoff.failed("Timer", 7)

    assert backoff.put_off("Timer") == {7}
    assert backoff.put_off("Job") == set()
    clock.now += 31
    assert backoff.put_off("Timer") == set()


def test_backoff_forgets_an_item_that_succeeded():
    clock = Clock()
    backoff = Backoff(first=30, clock=clock)
    backoff.failed("Timer", 7)
    backoff.failed("Timer", 7)
    backoff.succeeded("Timer", 7)

    assert backoff.put_off("Timer") == set()
    assert backoff.failed("Timer", 7) == 30


def test_a_failing_job_is_logged_and_put_off_while_the_others_run(
    database, settings, clock, jobs, caplog
):
    calls = []

    def broken(db, settings):
        calls.append("broken")
        raise RuntimeError("stored state is unreadable")

    def healthy(db, settings):
        calls.append("healthy")
        return 1

    worker.register_job("broken", broken)
    worker.register_job("healthy", healthy)

    with caplog.at_level(logging.ERROR, logger="engine.worker"):
        first = run_once(database, settings)
        second = run_once(database, settings)
        clock.now += 31
        third = run_once(database, settings)

    assert (first, second, third) == (1, 1, 1)
    assert calls == ["broken", "healthy", "healthy", "broken", "healthy"]
    assert [(r.getMessage(), r.exc_info[0]) for r in caplog.records] == [
        ("Job broken failed and was rolled back; next try in 30 s", RuntimeError),
        ("Job broken failed and was rolled back; next try in 60 s", RuntimeError),
    ]


def test_a_timer_that_cannot_fire_does_not_hold_up_the_next(
    database, settings, clock, jobs, monkeypatch
):
    deploy(database, "engine_timer.bpmn")
    waiting = []
    for _ in range(2):
        instance_id = start(database, "engine_timer")
        complete(database, task_of(database, instance_id, "before_timer").id, APPROVER)
        waiting.append(instance_id)
    with database.read() as session:
        timer_of = {t.instance_id: t.id for t in session.scalars(select(Timer)).all()}
        due = max(t.due_at for t in session.scalars(select(Timer)).all())
    broken_timer = timer_of[waiting[0]]
    fire = instances.fire_timer

    def fire_or_fail(session, timer_id, **kwargs):
        if timer_id == broken_timer:
            raise ValueError("state written by an unknown serializer version")
        return fire(session, timer_id, **kwargs)

    monkeypatch.setattr(instances, "fire_timer", fire_or_fail)
    wait_until(due)

    assert fire_due_timers(database, settings) == 1
    assert fire_due_timers(database, settings) == 0
    assert worker.backoff.put_off("Timer") == {broken_timer}
    with database.read() as session:
        statuses = {
            t.instance_id: t.status for t in session.scalars(select(Timer)).all()
        }
    assert statuses == {waiting[0]: "waiting", waiting[1]: "fired"}


def test_the_loop_outlives_a_pass_that_fails(
    database, settings, jobs, monkeypatch, caplog
):
    passes = []

    def failing_pass(db, settings):
        passes.append(len(passes))
        raise RuntimeError("unexpected")

    monkeypatch.setattr(worker, "run_once", failing_pass)

    with caplog.at_level(logging.ERROR, logger="engine.worker"):
        Worker(database, settings, interval=0).run(
            install_signal_handlers=False, max_passes=3
        )

    assert passes == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        "Worker pass failed; trying again"
    ] * 3
