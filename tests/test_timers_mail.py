"""Approval timers fired by the worker: reminder, escalation, expiry, and their mail."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from helpers_notifications import notification_settings, outbox, sent_to
from helpers_provisioning import make_org
from smtp_server import smtp_servers
from sqlalchemy import select

from engine.models import HistoryEntry, ProcessInstance, Timer, TimerStatus
from engine.notifications.smtp import save_smtp_settings
from engine.worker import Worker

# Long enough apart that the timers fire in order; short enough for a test.
DURATIONS = {
    "reminder_after": "PT1S",
    "escalate_after": "PT2S",
    "auto_cancel_after": "PT3S",
}


@pytest.fixture
def server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start()


@pytest.fixture
def timer_settings(database, tmp_path):
    return notification_settings(database, tmp_path, **DURATIONS)


def run_worker_until(database, settings, done, *, patience: float = 60.0) -> int:
    """Run passes of a fresh Worker until ``done()``; return the passes run."""
    deadline = time.monotonic() + patience
    passes = 0
    while not done():
        # The deadline only keeps a broken engine from hanging the test run.
        assert time.monotonic() < deadline, "the timers never fired"
        Worker(database, settings, interval=0).run(
            install_signal_handlers=False, max_passes=1
        )
        passes += 1
        time.sleep(0.1)
    return passes


def fired(database) -> Counter:
    """Count timer_fired history entries by timer element."""
    with database.read() as session:
        return Counter(
            session.scalars(
                select(HistoryEntry.element_id).where(
                    HistoryEntry.action == "timer_fired"
                )
            )
        )


def test_timers_remind_escalate_and_expire_across_a_worker_restart(
    database, timer_settings, server
):
    org = make_org(database, timer_settings)
    with database.write() as session:
        save_smtp_settings(session, timer_settings, server.settings(), actor="admin")
    org.new_hardware("jdoe")

    # The first worker stops once the reminder went out; a new one (a
    # restart) carries on from what the database says.
    run_worker_until(database, timer_settings, lambda: fired(database))
    run_worker_until(
        database,
        timer_settings,
        lambda: org.request(1).status == "expired",
    )
    # Further passes find nothing left to fire or send.
    Worker(database, timer_settings, interval=0).run(
        install_signal_handlers=False, max_passes=2
    )

    assert fired(database) == {
        "approval_reminder": 1,
        "approval_escalation": 1,
        "approval_timeout": 1,
    }
    with database.read() as session:
        assert {t.element_id: t.status for t in session.scalars(select(Timer))} == {
            "approval_reminder": TimerStatus.FIRED,
            "approval_escalation": TimerStatus.FIRED,
            "approval_timeout": TimerStatus.FIRED,
        }
        instance = session.scalars(select(ProcessInstance)).one()
        assert instance.end_event == "request_expired"

    assert {m.status for m in outbox(database)} == {"sent"}
    assert sent_to(server) == [
        ("approval_needed", "anna@example.org"),
        ("approval_needed", "hugo@example.org"),
        ("approval_needed", "marc@example.org"),
        ("escalation", "admin@example.org"),
        ("escalation", "emma@example.org"),
        ("expired", "jdoe@example.org"),
        ("reminder", "anna@example.org"),
        ("reminder", "hugo@example.org"),
        ("reminder", "marc@example.org"),
        ("submitted", "jdoe@example.org"),
    ]
    reminder = next(
        m.message
        for m in server.messages
        if m.message["X-Provisioning-Event"] == "reminder"
    )
    assert reminder["Subject"] == (
        "[Token Provisioning] Reminder: Approve request for Jdoe (request-1)"
    )
