"""The outbox page in pages of 50, newest first, per status."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from helpers_notifications import notification_settings
from helpers_provisioning import make_org
from test_notifications_web import client_of

from engine.mail import RenderedMail
from engine.models import utcnow
from engine.notifications.models import OutboxMessage
from engine.notifications.outbox import enqueue
from engine.notifications.recipients import Recipient
from web import create_app

MESSAGES = 120


@pytest.fixture
def admin(sqlite_database, tmp_path):
    settings = notification_settings(sqlite_database, tmp_path)
    make_org(sqlite_database, settings)
    with sqlite_database.write() as session:
        start = utcnow()
        for number in range(1, MESSAGES + 1):
            message = enqueue(
                session,
                event="submitted",
                recipient=Recipient(f"user{number}@example.org", f"User {number}"),
                rendered=RenderedMail(f"Message {number:03d}", "text", "<p>html</p>"),
            )
            message.created_at = start + timedelta(seconds=number)
        session.flush()
        first = session.query(OutboxMessage).filter_by(subject="Message 001").one()
        first.status = "failed"
    app = create_app({"SETTINGS": settings, "DATABASE": sqlite_database})
    return client_of(app, sqlite_database, "admin")


def subjects(response) -> list[str]:
    return re.findall(
        r'<td data-label="Subject">(Message \d{3})</td>',
        response.get_data(as_text=True),
    )


def test_outbox_shows_fifty_messages_a_page_newest_first(admin):
    first = admin.get("/admin/mail/outbox")
    last = admin.get("/admin/mail/outbox?page=3")

    assert subjects(first) == [f"Message {n:03d}" for n in range(120, 70, -1)]
    assert "1–50 of 120" in first.get_data(as_text=True)
    assert 'rel="next" href="/admin/mail/outbox?page=2"' in first.get_data(as_text=True)
    assert subjects(last) == [f"Message {n:03d}" for n in range(20, 0, -1)]
    assert "101–120 of 120" in last.get_data(as_text=True)


def test_outbox_pages_count_only_the_chosen_status(admin):
    failed = admin.get("/admin/mail/outbox?status=failed")
    pending = admin.get("/admin/mail/outbox?status=pending&page=3")

    assert subjects(failed) == ["Message 001"]
    assert "Page 1 of" not in failed.get_data(as_text=True)
    assert subjects(pending) == [f"Message {n:03d}" for n in range(20, 1, -1)]
    assert "101–119 of 119" in pending.get_data(as_text=True)


def test_outbox_page_past_the_end_shows_the_last_page(admin):
    assert subjects(admin.get("/admin/mail/outbox?page=99")) == [
        f"Message {n:03d}" for n in range(20, 0, -1)
    ]
