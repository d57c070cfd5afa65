"""The e-mail administration pages: SMTP settings, templates, the outbox."""

from __future__ import annotations

import re

import pytest
from helpers_notifications import notification_settings, outbox
from helpers_provisioning import make_org
from smtp_server import free_port, smtp_servers
from sqlalchemy import select

from engine.models import User
from engine.notifications import deliver_pending
from engine.notifications.models import MailTemplateOverride, StoredSmtpSettings
from web import create_app

PAGES = [
    "/admin/mail/settings",
    "/admin/mail/templates",
    "/admin/mail/templates/rejected",
    "/admin/mail/outbox",
]


@pytest.fixture
def start_smtp_server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start


@pytest.fixture
def mail_settings(sqlite_database, tmp_path):
    return notification_settings(sqlite_database, tmp_path)


@pytest.fixture
def org(sqlite_database, mail_settings):
    return make_org(sqlite_database, mail_settings)


@pytest.fixture
def app(org, sqlite_database, mail_settings):
    app = create_app(
        {"SETTINGS": mail_settings, "DATABASE": sqlite_database, "TESTING": True}
    )
    return app


def client_of(app, database, username):
    """Return a test client signed in as ``username``."""
    client = app.test_client()
    with database.read() as session:
        user_id = session.scalars(
            select(User.id).where(User.username == username)
        ).one()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True
    return client


def csrf_of(client, path: str) -> str:
    """Return the CSRF token of the form on ``path``."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_for_administrators_only(app, sqlite_database, path):
    assert app.test_client().get(path).status_code in (302, 401, 403)
    assert client_of(app, sqlite_database, "anna").get(path).status_code == 403
    assert client_of(app, sqlite_database, "admin").get(path).status_code == 200


def test_posting_without_a_csrf_token_is_refused(app, sqlite_database):
    admin = client_of(app, sqlite_database, "admin")
    response = admin.post(
        "/admin/mail/settings",
        data={
            "host": "smtp.example.org",
            "port": 25,
            "security": "none",
            "sender": "p@example.org",
            "timeout": 10,
        },
    )
    assert response.status_code == 400
    with sqlite_database.read() as session:
        assert session.get(StoredSmtpSettings, 1) is None


def test_smtp_password_is_stored_encrypted_and_never_shown(
    app, sqlite_database, start_smtp_server
):
    server = start_smtp_server(security="starttls", users={"mailer": "Pa55-word!"})
    admin = client_of(app, sqlite_database, "admin")
    token = csrf_of(admin, "/admin/mail/settings")
    form = {
        "csrf_token": token,
        "host": server.host,
        "port": server.port,
        "security": "starttls",
        "username": "mailer",
        "password": "Pa55-word!",
        "sender": "Token Provisioning <provisioning@example.org>",
        "timeout": 5,
        "ca_file": str(server.tls.cert_file),
    }
    response = admin.post("/admin/mail/settings", data=form, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "SMTP settings saved." in page
    assert "Pa55-word!" not in page
    assert "A password is stored; leave empty to keep it." in page
    with sqlite_database.read() as session:
        stored = session.get(StoredSmtpSettings, 1)
        assert stored.password_ciphertext
        assert "Pa55-word!" not in stored.password_ciphertext

    # Saving again without a password keeps the stored one.
    form.update(password="", timeout=6)
    admin.post("/admin/mail/settings", data=form)
    response = admin.post(
        "/admin/mail/settings/test",
        data={"csrf_token": token, "to": "someone@example.org"},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert (
        "Test mail to someone@example.org accepted. Server&#39;s answer: "
        "250 2.0.0 Ok: queued as 1"
    ) in page
    assert [m.rcpt_tos for m in server.messages] == [["someone@example.org"]]


def control(page: str, name: str) -> str:
    """Return the opening tag of the form control named ``name`` on ``page``."""
    return re.search(rf'<(?:input|select)[^>]* name="{name}"[^>]*>', page).group(0)


def test_smtp_settings_link_hints_and_errors_and_nothing_else(app, sqlite_database):
    admin = client_of(app, sqlite_database, "admin")
    page = admin.get("/admin/mail/settings").get_data(as_text=True)
    assert '"None"' not in page
    assert "aria-invalid" not in control(page, "host")
    assert "aria-describedby" not in control(page, "host")
    assert 'aria-describedby="password-hint"' in control(page, "password")

    form = {
        "csrf_token": csrf_of(admin, "/admin/mail/settings"),
        "host": "smtp.example.org",
        "port": "70000",
        "security": "none",
        "sender": "Token Provisioning <provisioning@example.org>",
        "timeout": "5",
    }
    page = admin.post("/admin/mail/settings", data=form).get_data(as_text=True)
    assert '"None"' not in page
    port = control(page, "port")
    assert 'aria-invalid="true"' in port
    assert 'aria-describedby="port-err"' in port
    assert "aria-invalid" not in control(page, "host")


def test_a_failing_test_mail_shows_the_servers_answer(
    app, sqlite_database, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    server.handler.refuse_recipient("nobody@example.org")
    admin = client_of(app, sqlite_database, "admin")
    token = csrf_of(admin, "/admin/mail/settings")
    admin.post(
        "/admin/mail/settings",
        data={
            "csrf_token": token,
            "host": server.host,
            "port": server.port,
            "security": "none",
            "sender": "provisioning@example.org",
            "timeout": 5,
        },
    )
    response = admin.post(
        "/admin/mail/settings/test",
        data={"csrf_token": token, "to": "nobody@example.org"},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "The test mail was not sent" in page
    assert "550 5.1.1 Mailbox unavailable" in page


def test_template_preview_save_and_use(app, sqlite_database, org):
    admin = client_of(app, sqlite_database, "admin")
    path = "/admin/mail/templates/rejected?request_type=new_token"
    page = admin.get(path).get_data(as_text=True)
    assert "request.business_key" in page  # the variables are documented
    assert "REQ-2024-000123" in page  # preview of the sample request
    token = csrf_of(admin, path)

    custom = {
        "csrf_token": token,
        "subject": "Sorry {{ user.display_name }}: {{ request.business_key }}",
        "text": "No token this time. {{ comment }}\n",
        "html": "<p>No token this time. {{ comment }}</p>\n",
    }
    preview = admin.post(path, data={**custom, "action": "preview"})
    assert "Sorry Maria Lopez: REQ-2024-000123" in preview.get_data(as_text=True)
    with sqlite_database.read() as session:
        assert session.scalars(select(MailTemplateOverride)).first() is None

    bad = admin.post(
        path, data={**custom, "subject": "{{ user.phone }}", "action": "save"}
    )
    assert "unknown variable &#39;user.phone&#39;" in bad.get_data(as_text=True)

    saved = admin.post(path, data={**custom, "action": "save"}, follow_redirects=True)
    assert "Template saved." in saved.get_data(as_text=True)

    request_id = org.new_hardware("jdoe")
    org.decide("hugo", request_id, "reject", comment="Budget frozen")
    rejected = [m for m in outbox(sqlite_database) if m.event == "rejected"]
    assert [(m.subject, m.text_body) for m in rejected] == [
        (
            f"Sorry Jdoe: request-{request_id}",
            "No token this time. Budget frozen\n",
        )
    ]


def test_preview_of_a_template_that_writes_too_much_says_so(app, sqlite_database):
    admin = client_of(app, sqlite_database, "admin")
    path = "/admin/mail/templates/submitted"
    form = {
        "csrf_token": csrf_of(admin, path),
        "subject": "Received",
        "text": "{{ 'x' * 5000000 }}",
        "html": "<p>Received</p>",
        "action": "preview",
    }

    page = admin.post(path, data=form).get_data(as_text=True)

    assert (
        "The custom text template of the &#39;submitted&#39; e-mail fails at "
        "line 1: it would repeat 5,000,000 characters or items, more than the "
        "256 KiB one part of an e-mail may hold; correct it in the e-mail "
        "templates settings." in page
    )
    assert "xxxxxxxxxx" not in page


def test_outbox_shows_a_failure_with_the_answer_and_resends_it(
    app, sqlite_database, org, mail_settings, start_smtp_server
):
    server = start_smtp_server()
    server.handler.refuse_recipient("jdoe@example.org", "550 5.1.1 No such user here")
    org.new_hardware("jdoe")
    deliver_pending(sqlite_database, mail_settings, smtp=server.settings())
    [failed] = [m for m in outbox(sqlite_database) if m.status == "failed"]

    admin = client_of(app, sqlite_database, "admin")
    page = admin.get("/admin/mail/outbox?status=failed").get_data(as_text=True)
    assert "550 5.1.1 No such user here" in page
    assert "jdoe@example.org" in page
    token = csrf_of(admin, "/admin/mail/outbox?status=failed")

    response = admin.post(
        f"/admin/mail/outbox/{failed.id}/resend",
        data={"csrf_token": token, "address": "john.doe@example.org"},
        follow_redirects=True,
    )
    assert "E-mail to john.doe@example.org queued again." in response.get_data(
        as_text=True
    )
    deliver_pending(sqlite_database, mail_settings, smtp=server.settings())
    assert ["john.doe@example.org"] in [m.rcpt_tos for m in server.messages]


def test_send_waiting_mail_now_skips_the_backoff_after_the_server_is_back(
    app, sqlite_database, org, mail_settings, start_smtp_server
):
    down = start_smtp_server().settings(port=free_port(), timeout=2.0)
    org.new_hardware("jdoe")
    deliver_pending(sqlite_database, mail_settings, smtp=down)
    waiting = [m for m in outbox(sqlite_database) if m.status == "pending"]
    assert waiting and all(m.attempts == 1 for m in waiting)
    server = start_smtp_server()
    assert deliver_pending(sqlite_database, mail_settings, smtp=server.settings()) == 0

    admin = client_of(app, sqlite_database, "admin")
    token = csrf_of(admin, "/admin/mail/outbox")
    response = admin.post(
        "/admin/mail/outbox/send-now",
        data={"csrf_token": token},
        follow_redirects=True,
    )

    assert (
        f"{len(waiting)} waiting e-mail(s) brought forward; the worker sends them "
        "on its next pass." in response.get_data(as_text=True)
    )
    assert deliver_pending(
        sqlite_database, mail_settings, smtp=server.settings()
    ) == len(waiting)
    assert {m.status for m in outbox(sqlite_database)} == {"sent"}


def test_send_waiting_mail_now_is_for_administrators_with_a_csrf_token(
    app, sqlite_database, org, mail_settings, start_smtp_server
):
    down = start_smtp_server().settings(port=free_port(), timeout=2.0)
    org.new_hardware("jdoe")
    deliver_pending(sqlite_database, mail_settings, smtp=down)
    due_before = sorted(m.next_attempt_at for m in outbox(sqlite_database))

    admin = client_of(app, sqlite_database, "admin")
    approver = client_of(app, sqlite_database, "anna")
    page = approver.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    assert admin.post("/admin/mail/outbox/send-now").status_code == 400
    assert (
        approver.post(
            "/admin/mail/outbox/send-now", data={"csrf_token": token}
        ).status_code
        == 403
    )
    assert sorted(m.next_attempt_at for m in outbox(sqlite_database)) == due_before
