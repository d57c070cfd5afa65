"""The ``provisioning mail`` commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers_notifications import notification_settings
from smtp_server import smtp_servers

from engine.mail import RenderedMail
from engine.notifications.cli import mail
from engine.notifications.outbox import enqueue
from engine.notifications.recipients import Recipient


@pytest.fixture
def server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start()


@pytest.fixture
def run(sqlite_database, tmp_path, server, monkeypatch):
    """Run a ``mail`` command against the test database and SMTP server."""
    settings = notification_settings(sqlite_database, tmp_path)
    environment = {
        "DATABASE_URL": settings.database_url,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key,
        "SMTP_HOST": server.host,
        "SMTP_PORT": str(server.port),
        "SMTP_SENDER": "provisioning@example.org",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    def invoke(*args: str):
        return CliRunner().invoke(mail, list(args))

    return invoke


def test_mail_test_prints_the_servers_answer(run, server):
    result = run("test", "--to", "ops@example.org")

    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{server.host}:{server.port} answered: 250 2.0.0 Ok: queued as 1\n"
    )


def test_outbox_lists_a_failure_and_resend_queues_it_again(
    run, server, sqlite_database
):
    server.handler.refuse_recipient("gone@example.org")
    with sqlite_database.write() as session:
        row = enqueue(
            session,
            event="submitted",
            recipient=Recipient("gone@example.org", "Gone"),
            rendered=RenderedMail("Hello", "Body\n", "<p>Body</p>"),
        )
        session.flush()
        outbox_id = row.id

    assert run("deliver").output == "Handled 1 message(s).\n"
    listing = run("outbox", "--status", "failed").output
    assert listing.splitlines()[0] == "pending: 0, sending: 0, sent: 0, failed: 1"
    assert outbox_id in listing
    assert "550 5.1.1 Mailbox unavailable" in listing

    result = run("resend", outbox_id, "--to", "back@example.org")
    assert result.output == f"E-mail {outbox_id} to back@example.org queued again.\n"
    run("deliver")
    assert [m.rcpt_tos for m in server.messages] == [["back@example.org"]]


def test_resending_an_unknown_message_says_so(run):
    result = run("resend", "0123")

    assert result.exit_code == 1
    assert result.output == "Error: There is no e-mail '0123' in the outbox.\n"
