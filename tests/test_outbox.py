"""Delivery of the outbox: retries, failures, resends, leases, racing workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from helpers_notifications import notification_settings, outbox
from smtp_server import free_port, smtp_servers

from engine.db import Database
from engine.mail import RenderedMail
from engine.models import utcnow
from engine.notifications import (
    OutboxStatus,
    claim_next,
    deliver_pending,
    release,
    resend,
    send_claimed,
)
from engine.notifications.outbox import DEFAULT_LEASE, MAX_ATTEMPTS, enqueue
from engine.notifications.recipients import Recipient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def start_smtp_server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start


@pytest.fixture
def mail_settings(database, tmp_path):
    return notification_settings(database, tmp_path)


def add_messages(database: Database, count: int, *, to: str = "user{}@example.org"):
    """Queue ``count`` messages; return their ids."""
    with database.write() as session:
        rows = [
            enqueue(
                session,
                event="submitted",
                recipient=Recipient(address=to.format(i), name=f"User {i}"),
                rendered=RenderedMail(
                    subject=f"Message {i}", text=f"Body {i}\n", html=f"<p>{i}</p>"
                ),
            )
            for i in range(count)
        ]
        session.flush()
        return [row.id for row in rows]


def test_starttls_with_login_delivers_with_a_stable_message_id(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server(security="starttls", users={"mailer": "s3cret"})
    [outbox_id] = add_messages(database, 1)

    handled = deliver_pending(
        database,
        mail_settings,
        smtp=server.settings(username="mailer", password="s3cret"),
    )

    assert handled == 1
    [received] = server.messages
    assert received.rcpt_tos == ["user0@example.org"]
    assert received.message["Message-ID"] == f"<outbox-{outbox_id}@example.org>"
    assert received.message["To"] == "User 0 <user0@example.org>"
    [row] = outbox(database)
    assert row.status == OutboxStatus.SENT
    assert row.smtp_answer == "250 2.0.0 Ok: queued as 1"
    assert row.claim_token is None


def test_server_down_is_retried_later_and_sent_once_back(
    database, mail_settings, start_smtp_server
):
    port = free_port()
    down = start_smtp_server().settings(port=port, timeout=2.0)
    add_messages(database, 1)

    assert deliver_pending(database, mail_settings, smtp=down) == 1
    [row] = outbox(database)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert "refused the connection" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(seconds=30)

    # Not due yet: nothing is tried again before the backoff has passed.
    server = start_smtp_server()
    assert deliver_pending(database, mail_settings, smtp=server.settings()) == 0
    later = row.next_attempt_at + timedelta(seconds=1)
    assert (
        deliver_pending(database, mail_settings, smtp=server.settings(), now=later) == 1
    )
    assert (
        deliver_pending(database, mail_settings, smtp=server.settings(), now=later) == 0
    )

    assert len(server.messages) == 1
    [row] = outbox(database)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.SENT, 2, "")


def test_backoff_doubles_and_gives_up_after_the_last_attempt(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    server.handler.fail_data("451 4.3.0 Try again later")
    add_messages(database, 1)

    delays = []
    now = utcnow()
    for _ in range(MAX_ATTEMPTS):
        assert (
            deliver_pending(database, mail_settings, smtp=server.settings(), now=now)
            == 1
        )
        [row] = outbox(database)
        delays.append(row.next_attempt_at - now)
        now = row.next_attempt_at

    assert delays[1] == 2 * delays[0]
    assert delays[2] == 2 * delays[1]
    [row] = outbox(database)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error.startswith(f"Gave up after {MAX_ATTEMPTS} attempts: ")
    assert row.smtp_answer == "451 4.3.0 Try again later"


def test_rejected_recipient_fails_visibly_and_can_be_resent(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    server.handler.refuse_recipient("user0@example.org")
    [outbox_id] = add_messages(database, 1)

    deliver_pending(database, mail_settings, smtp=server.settings())

    [row] = outbox(database)
    assert row.status == OutboxStatus.FAILED
    assert row.smtp_answer == "550 5.1.1 Mailbox unavailable"
    assert "refused the recipient user0@example.org" in row.last_error
    assert server.messages == []

    with database.write() as session:
        resend(session, outbox_id, actor="admin", address="fixed@example.org")
    deliver_pending(database, mail_settings, smtp=server.settings())

    assert [m.rcpt_tos for m in server.messages] == [["fixed@example.org"]]
    assert server.messages[0].message["Message-ID"] == (
        f"<outbox-{outbox_id}@example.org>"
    )
    assert outbox(database)[0].status == OutboxStatus.SENT


def test_only_failed_messages_can_be_resent(database, mail_settings):
    [outbox_id] = add_messages(database, 1)
    with database.write() as session, pytest.raises(Exception) as raised:
        resend(session, outbox_id, actor="admin")
    assert str(raised.value) == (
        f"E-mail {outbox_id} is pending, not failed; only failed messages can be "
        "sent again."
    )


def test_an_abandoned_claim_is_sent_once_after_its_lease_expires(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    [outbox_id] = add_messages(database, 1)
    abandoned = claim_next(database)
    assert abandoned is not None and abandoned.id == outbox_id

    # While the lease runs, nobody else takes the message.
    assert deliver_pending(database, mail_settings, smtp=server.settings()) == 0
    expired = utcnow() + DEFAULT_LEASE + timedelta(seconds=1)
    assert (
        deliver_pending(database, mail_settings, smtp=server.settings(), now=expired)
        == 1
    )
    assert len(server.messages) == 1

    # The first worker comes back late: its outcome is not recorded over the
    # second worker's.
    assert send_claimed(database, abandoned, server.settings()) == OutboxStatus.SENT
    [row] = outbox(database)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 2


_CLAIM_AND_HANG = """
import sys, time
from engine import product
from engine.db import Database
from engine.notifications import claim_next
claim = claim_next(Database(sys.argv[1]))
print(claim.id, flush=True)
time.sleep(600)
"""


def test_a_worker_killed_between_claim_and_send_loses_nothing(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    [outbox_id] = add_messages(database, 1)
    url = database.url.render_as_string(hide_password=False)
    worker = subprocess.Popen(
        [sys.executable, "-c", _CLAIM_AND_HANG, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout.readline().strip() == outbox_id
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stdout.close()

    [row] = outbox(database)
    assert row.status == OutboxStatus.SENDING
    assert deliver_pending(database, mail_settings, smtp=server.settings()) == 0
    expired = row.lease_until + timedelta(seconds=1)
    deliver_pending(database, mail_settings, smtp=server.settings(), now=expired)
    deliver_pending(database, mail_settings, smtp=server.settings(), now=expired)

    assert [m.message["Message-ID"] for m in server.messages] == [
        f"<outbox-{outbox_id}@example.org>"
    ]
    assert outbox(database)[0].status == OutboxStatus.SENT


def test_a_stopping_worker_releases_the_message_it_just_claimed(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    add_messages(database, 2)
    answers = iter([False, False, False, True])

    handled = deliver_pending(
        database,
        mail_settings,
        smtp=server.settings(),
        should_stop=lambda: next(answers),
    )

    assert handled == 1
    assert len(server.messages) == 1
    rows = outbox(database)
    assert sorted((r.status, r.attempts) for r in rows) == [
        (OutboxStatus.PENDING, 0),
        (OutboxStatus.SENT, 1),
    ]
    assert all(r.claim_token is None for r in rows)


def test_release_gives_a_claim_back_unsent(database):
    add_messages(database, 1)
    claim = claim_next(database)

    assert release(database, claim) is True
    assert release(database, claim) is False
    [row] = outbox(database)
    assert (row.status, row.attempts, row.claim_token) == (
        OutboxStatus.PENDING,
        0,
        None,
    )


def test_two_workers_racing_send_each_message_exactly_once(
    database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    ids = add_messages(database, 200)
    url = database.url.render_as_string(hide_password=False)
    counts: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        # Each worker has its own engine and connections, as separate
        # processes would.
        own = Database(url)
        try:
            counts.append(deliver_pending(own, mail_settings, smtp=server.settings()))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            own.dispose()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert errors == []
    assert sum(counts) == 200
    received = Counter(m.message["Message-ID"] for m in server.messages)
    assert len(server.messages) == 200
    assert set(received) == {f"<outbox-{i}@example.org>" for i in ids}
    assert set(received.values()) == {1}
    assert {r.status for r in outbox(database)} == {OutboxStatus.SENT}
