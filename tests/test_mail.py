from datetime import UTC, datetime

import pytest
from smtp_server import free_port, smtp_servers

from engine import mail
from engine.errors import ConfigurationError
from engine.mail import (
    EVENTS,
    MailSettingsError,
    MailTemplateError,
    PermanentMailError,
    SmtpSettings,
    TemporaryMailError,
    build_message,
    make_message_id,
    render_template,
    sample_context,
    send_message,
    validate_template,
)

SENDER = "Token Provisioning <provisioning@example.org>"
MARIA = "maria.lopez@example.org"
USERS = {"alice": "correct horse"}


@pytest.fixture
def start_smtp_server(tmp_path):
    with smtp_servers(tmp_path) as start:
        yield start


def _message(to: list[str] | None = None) -> mail.EmailMessage:
    return build_message(
        sender=SENDER,
        to=to or [MARIA],
        subject="Request REQ-2024-000123 received",
        text="Hello Maria,\n\nwe have received your request.\n",
        html="<p>Hello Maria,</p><p>we have received your request.</p>\n",
        message_id=make_message_id("42", "example.org"),
        date=datetime(2024, 5, 2, 14, 3, tzinfo=UTC),
    )


# --- Settings -----------------------------------------------------------------


def test_settings_from_empty_environment_are_safe_defaults():
    settings = SmtpSettings.from_env({})

    assert settings == SmtpSettings(
        host="localhost",
        port=25,
        security="none",
        username=None,
        password=None,
        sender="Token Provisioning <provisioning@localhost>",
        timeout=10.0,
    )
    assert settings.verify is True


def test_settings_from_environment_read_every_variable(tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("")

    settings = SmtpSettings.from_env(
        {
            "SMTP_HOST": "smtp.example.org",
            "SMTP_PORT": "2587",
            "SMTP_SECURITY": "STARTTLS",
            "SMTP_USERNAME": "provisioning",
            "SMTP_PASSWORD": " secret ",
            "SMTP_SENDER": "tokens@example.org",
            "SMTP_TIMEOUT": "2.5",
            "SMTP_CA_FILE": str(ca_file),
        }
    )

    assert settings == SmtpSettings(
        host="smtp.example.org",
        port=2587,
        security="starttls",
        username="provisioning",
        password=" secret ",
        sender="tokens@example.org",
        timeout=2.5,
        ca_file=str(ca_file),
    )
    assert settings.sender_domain == "example.org"


@pytest.mark.parametrize(
    ("security", "port"), [("none", 25), ("starttls", 587), ("tls", 465)]
)
def test_settings_port_defaults_to_the_usual_port_of_the_security_mode(security, port):
    assert SmtpSettings.from_env({"SMTP_SECURITY": security}).port == port


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SMTP_SECURITY": "ssl"},
            "SMTP_SECURITY is 'ssl'; accepted values are none, starttls and tls.",
        ),
        (
            {"SMTP_PORT": "smtp"},
            "SMTP_PORT is 'smtp'; it must be a whole number from 1 to 65535, "
            "usually 25, 587 (starttls) or 465 (tls).",
        ),
        (
            {"SMTP_PORT": "70000"},
            "SMTP_PORT is '70000'; it must be a whole number from 1 to 65535, "
            "usually 25, 587 (starttls) or 465 (tls).",
        ),
        (
            {"SMTP_TIMEOUT": "-1"},
            "SMTP_TIMEOUT is '-1'; it must be a number of seconds greater than 0, "
            "for example 10.",
        ),
        (
            {"SMTP_TIMEOUT": "soon"},
            "SMTP_TIMEOUT is 'soon'; it must be a number of seconds greater than "
            "0, for example 10.",
        ),
        (
            {"SMTP_SENDER": "provisioning"},
            "SMTP_SENDER is 'provisioning'; it must be an e-mail address such as "
            "provisioning@example.org, optionally with a name: "
            "Token Provisioning <provisioning@example.org>.",
        ),
        (
            {"SMTP_PASSWORD": "secret"},
            "SMTP_PASSWORD is set but SMTP_USERNAME is empty; set both to log in "
            "to the SMTP server, or neither.",
        ),
        (
            {"SMTP_CA_FILE": "/nonexistent/ca.pem"},
            "SMTP_CA_FILE is '/nonexistent/ca.pem', but there is no such file; "
            "give the path of a PEM file with the CA certificates to trust.",
        ),
    ],
)
def test_settings_from_environment_reject_bad_values(environ, message):
    with pytest.raises(MailSettingsError) as raised:
        SmtpSettings.from_env(environ)

    assert str(raised.value) == message
    assert isinstance(raised.value, ConfigurationError)


def test_settings_repr_hides_the_password():
    settings = SmtpSettings(username="alice", password="correct horse")

    assert "correct horse" not in repr(settings)
    assert "username='alice'" in repr(settings)


# --- Messages -----------------------------------------------------------------


def test_make_message_id_is_stable_for_an_outbox_entry():
    assert make_message_id("42", "example.org") == "<outbox-42@example.org>"


@pytest.mark.parametrize(
    ("outbox_id", "domain", "message"),
    [
        (
            "4 2",
            "example.org",
            "outbox id '4 2' cannot be part of a Message-ID; use letters, "
            "digits, '.', '_' and '-' only.",
        ),
        (
            "42",
            "exa>mple.org",
            "domain 'exa>mple.org' cannot be part of a Message-ID; use a host "
            "name such as example.org.",
        ),
    ],
)
def test_make_message_id_rejects_parts_that_break_the_header(
    outbox_id, domain, message
):
    with pytest.raises(ValueError) as raised:
        make_message_id(outbox_id, domain)

    assert str(raised.value) == message


def test_build_message_refuses_to_duplicate_its_own_headers():
    with pytest.raises(ValueError) as raised:
        build_message(
            sender=SENDER, to=[MARIA], subject="s", text="t", headers={"To": "x@y"}
        )

    assert str(raised.value) == (
        "Header 'To' is set by build_message; pass it as an argument instead "
        "of in 'headers'."
    )


def test_build_message_without_html_is_plain_text():
    message = build_message(
        sender=SENDER, to=[MARIA], subject="s", text="Hello\n", headers={"X-A": "1"}
    )

    assert message.get_content_type() == "text/plain"
    assert message["X-A"] == "1"
    assert message["Message-ID"].endswith("@example.org>")


# --- Delivery -----------------------------------------------------------------


def test_send_plain_message_delivers_exact_headers_and_both_parts(
    start_smtp_server,
):
    server = start_smtp_server()

    answer = send_message(server.settings(), _message())

    assert answer == "250 2.0.0 Ok: queued as 1"
    [received] = server.messages
    assert received.mail_from == "provisioning@example.org"
    assert received.rcpt_tos == [MARIA]
    message = received.message
    assert list(message.keys()) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    ]
    assert message["From"] == SENDER
    assert message["To"] == MARIA
    assert message["Subject"] == "Request REQ-2024-000123 received"
    assert message["Date"] == "Thu, 02 May 2024 14:03:00 +0000"
    assert message["Message-ID"] == "<outbox-42@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content() == "Hello Maria,\n\nwe have received your request.\n"
    assert html.get_content_type() == "text/html"
    assert html.get_content() == (
        "<p>Hello Maria,</p><p>we have received your request.</p>\n"
    )


def test_send_over_starttls_trusts_the_given_ca_and_logs_in(start_smtp_server):
    server = start_smtp_server(security="starttls", users=USERS)
    settings = server.settings(username="alice", password="correct horse")

    answer = send_message(settings, _message())

    assert answer == "250 2.0.0 Ok: queued as 1"
    assert server.messages[0].rcpt_tos == [MARIA]


def test_send_over_implicit_tls_logs_in(start_smtp_server):
    server = start_smtp_server(security="tls", users=USERS)
    settings = server.settings(username="alice", password="correct horse")

    answer = send_message(settings, _message())

    assert answer == "250 2.0.0 Ok: queued as 1"
    assert server.messages[0].message["Message-ID"] == "<outbox-42@example.org>"


def test_wrong_password_is_permanent(start_smtp_server):
    server = start_smtp_server(security="starttls", users=USERS)
    settings = server.settings(username="alice", password="wrong")

    with pytest.raises(PermanentMailError) as raised:
        send_message(settings, _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} rejected the login of user "
        "'alice' (535 5.7.8 Authentication credentials invalid); check "
        "SMTP_USERNAME and SMTP_PASSWORD."
    )
    assert raised.value.smtp_code == 535
    assert raised.value.server_answer == "535 5.7.8 Authentication credentials invalid"
    assert server.messages == []


def test_login_on_a_connection_without_auth_is_permanent(start_smtp_server):
    # The server offers AUTH only after STARTTLS, so a plain session cannot
    # log in; the password must not be sent unencrypted either.
    server = start_smtp_server(security="starttls", users=USERS)
    settings = server.settings(
        security="none", username="alice", password="correct horse"
    )

    with pytest.raises(PermanentMailError) as raised:
        send_message(settings, _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} does not offer login (AUTH) on "
        "this connection; use SMTP_SECURITY=starttls or tls, or leave "
        "SMTP_USERNAME empty if the server needs no login."
    )


def test_self_signed_certificate_without_ca_file_is_refused(start_smtp_server):
    server = start_smtp_server(security="starttls")

    with pytest.raises(PermanentMailError) as raised:
        send_message(server.settings(ca_file=None), _message())

    assert str(raised.value) == (
        f"The certificate of the SMTP server 127.0.0.1:{server.port} could not be "
        "verified (self-signed certificate); set SMTP_HOST to a name in the "
        "server's certificate, and SMTP_CA_FILE to the CA that issued it if it is "
        "not a public one."
    )
    assert server.messages == []


def test_server_down_is_temporary():
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, sender=SENDER)

    with pytest.raises(TemporaryMailError) as raised:
        send_message(settings, _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{port} refused the connection; check "
        "SMTP_HOST/SMTP_PORT and that the server is running. The message will "
        "be retried."
    )
    assert raised.value.smtp_code is None
    assert raised.value.server_answer is None


def test_plain_client_on_an_implicit_tls_port_times_out_with_a_hint(
    start_smtp_server,
):
    server = start_smtp_server(security="tls")
    settings = server.settings(security="starttls", timeout=0.5)

    with pytest.raises(TemporaryMailError) as raised:
        send_message(settings, _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} did not answer within 0.5 "
        "seconds during the connect step; check SMTP_HOST/SMTP_PORT, "
        "SMTP_TIMEOUT and any firewall between; if the port expects implicit "
        "TLS (usually 465), set SMTP_SECURITY=tls. The message will be retried."
    )


def test_tls_client_on_a_plain_port_is_permanent(start_smtp_server):
    server = start_smtp_server(security="starttls")

    with pytest.raises(PermanentMailError) as raised:
        send_message(server.settings(security="tls"), _message())

    assert str(raised.value) == (
        f"The TLS handshake with 127.0.0.1:{server.port} failed "
        "(WRONG_VERSION_NUMBER); check that SMTP_SECURITY matches the port: tls "
        "for implicit TLS (usually 465), starttls for 587 or 25."
    )


def test_refused_recipient_is_permanent_and_named(start_smtp_server):
    server = start_smtp_server()
    server.handler.refuse_recipient("nobody@example.org")

    with pytest.raises(PermanentMailError) as raised:
        send_message(server.settings(), _message(to=["nobody@example.org"]))

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} refused the recipient "
        "nobody@example.org (550 5.1.1 Mailbox unavailable); check the e-mail "
        "address of that user."
    )
    assert raised.value.smtp_code == 550
    assert server.messages == []


def test_partly_refused_recipients_are_permanent_and_named(start_smtp_server):
    server = start_smtp_server()
    server.handler.refuse_recipient("nobody@example.org")

    with pytest.raises(PermanentMailError) as raised:
        send_message(server.settings(), _message(to=[MARIA, "nobody@example.org"]))

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} refused the recipient "
        "nobody@example.org (550 5.1.1 Mailbox unavailable); check the e-mail "
        "address of that user. The message was delivered to "
        "maria.lopez@example.org, so it must not be sent again."
    )
    assert server.messages[0].rcpt_tos == [MARIA]


def test_temporary_refusal_of_the_message_is_temporary(start_smtp_server):
    server = start_smtp_server()
    server.handler.fail_data("451 4.3.0 Try again later")

    with pytest.raises(TemporaryMailError) as raised:
        send_message(server.settings(), _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} temporarily refused the message "
        "(451 4.3.0 Try again later). The message will be retried."
    )
    assert raised.value.smtp_code == 451
    assert raised.value.server_answer == "451 4.3.0 Try again later"


def test_temporary_refusal_of_a_recipient_is_temporary(start_smtp_server):
    server = start_smtp_server()
    server.handler.refuse_recipient(MARIA, "450 4.2.1 Mailbox busy")

    with pytest.raises(TemporaryMailError) as raised:
        send_message(server.settings(), _message())

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{server.port} temporarily refused the "
        f"recipient {MARIA} (450 4.2.1 Mailbox busy). The message will be retried."
    )


def test_connection_test_logs_in_without_sending(start_smtp_server):
    server = start_smtp_server(security="starttls", users=USERS)
    settings = server.settings(username="alice", password="correct horse")

    assert mail.test_connection(settings) == "235 2.7.0 Authentication successful"
    assert server.messages == []


def test_connection_test_sends_a_test_message(start_smtp_server):
    server = start_smtp_server(security="tls")

    answer = mail.test_connection(server.settings(), to=MARIA)

    assert answer == "250 2.0.0 Ok: queued as 1"
    [received] = server.messages
    assert received.rcpt_tos == [MARIA]
    assert received.message["Subject"] == "Test message from token provisioning"


def test_connection_test_errors_do_not_promise_a_retry():
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port)

    with pytest.raises(TemporaryMailError) as raised:
        mail.test_connection(settings)

    assert str(raised.value) == (
        f"The SMTP server 127.0.0.1:{port} refused the connection; check "
        "SMTP_HOST/SMTP_PORT and that the server is running."
    )


def test_rendered_template_goes_out_as_one_message(start_smtp_server):
    server = start_smtp_server()
    rendered = render_template("submitted", sample_context())
    message = build_message(
        sender=SENDER,
        to=[MARIA],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=make_message_id("7", "example.org"),
    )

    send_message(server.settings(), message)

    text, html = server.messages[0].message.iter_parts()
    assert text.get_content() == rendered.text
    assert html.get_content() == rendered.html


# --- Templates ----------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS)
def test_every_default_template_renders_for_the_sample_context(event):
    rendered = render_template(event, sample_context())

    assert rendered.subject.startswith("[Token Provisioning] ")
    assert "\n" not in rendered.subject
    for body in (rendered.text, rendered.html):
        assert "REQ-2024-000123" in body
        assert "https://tokens.example.org/requests/REQ-2024-000123" in body
        assert "None" not in body
    assert rendered.html.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("kind", ["subject", "text", "html"])
def test_every_default_template_passes_validation(event, kind):
    source = getattr(mail.DEFAULT_TEMPLATES[event], kind)

    assert validate_template(source, kind) == []


def test_rejected_mail_carries_the_approvers_comment():
    context = sample_context()
    context["comment"] = "Your manager has not confirmed the need."

    rendered = render_template("rejected", context)

    assert (
        "rejected by Daniel Okafor on 2024-05-03 09:41 UTC.\n\n"
        "Reason given:\nYour manager has not confirmed the need.\n"
    ) in rendered.text
    assert "Your manager has not confirmed the need.</blockquote>" in rendered.html


def test_completed_hardware_mail_carries_serial_and_tracking_number():
    rendered = render_template("completed", sample_context())

    assert (
        "Serial number:   000123456789\n"
        "Carrier:         DHL Express\n"
        "Tracking number: JD014600003828319412\n"
    ) in rendered.text
    assert "<td>JD014600003828319412</td>" in rendered.html
    assert "activate" not in rendered.text


def test_completed_software_mail_carries_the_activation_link():
    context = sample_context()
    context["request"]["token_class"] = "software"
    context["request"]["token_model"] = "Android"

    rendered = render_template("completed", context)

    assert rendered.subject == (
        "[Token Provisioning] Request REQ-2024-000123 completed: your software "
        "token is ready"
    )
    assert "https://tokens.example.org/activate/Vb3kQ9rT2mXw8LpZ\n" in rendered.text
    assert 'href="https://tokens.example.org/activate/Vb3kQ9rT2mXw8LpZ"' in (
        rendered.html
    )
    assert "Serial number" not in rendered.text


def test_optional_values_may_be_missing_from_the_context():
    context = sample_context()
    del context["approver"], context["comment"], context["delivery"]

    rendered = render_template("rejected", context)

    assert "has been rejected on 2024-05-03 09:41 UTC." in rendered.text
    assert "No reason was given." in rendered.text


def test_html_escapes_a_comment_and_text_keeps_it():
    context = sample_context()
    context["comment"] = "<script>alert('x')</script> & more"

    rendered = render_template("rejected", context)

    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in (
        rendered.html
    )
    assert "<script>" not in rendered.html
    assert "<script>alert('x')</script> & more" in rendered.text


def test_subject_is_one_line_even_when_a_value_has_line_breaks():
    context = sample_context()
    context["user"]["display_name"] = "Maria\r\nBcc: victim@example.org"

    rendered = render_template("approval_needed", context)

    assert rendered.subject == (
        "[Token Provisioning] Approval needed: New hardware token for Maria Bcc: "
        "victim@example.org (REQ-2024-000123)"
    )


def test_override_replaces_only_the_given_template():
    rendered = render_template(
        "submitted",
        sample_context(),
        overrides={"subject": "Got it: {{ request.business_key }}"},
    )

    assert rendered.subject == "Got it: REQ-2024-000123"
    assert rendered.text == render_template("submitted", sample_context()).text


def test_typo_in_an_override_fails_the_render():
    with pytest.raises(MailTemplateError) as raised:
        render_template(
            "submitted",
            sample_context(),
            overrides={"text": "Hello\n{{ user.displayname }}\n"},
        )

    assert str(raised.value) == (
        "The custom text template of the 'submitted' e-mail fails at line 2: "
        "unknown variable or field: 'dict object' has no attribute "
        "'displayname'; correct it in the e-mail templates settings."
    )


def test_sandbox_refuses_class_access_at_render():
    with pytest.raises(MailTemplateError) as raised:
        render_template(
            "submitted",
            sample_context(),
            overrides={"html": "<p>{{ ''.__class__.__mro__ }}</p>"},
        )

    assert str(raised.value) == (
        "The custom html template of the 'submitted' e-mail fails at line 1: "
        "the sandbox forbids it: access to attribute '__class__' of 'str' object "
        "is unsafe.; correct it in the e-mail templates settings."
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "{{ 'x' * 5000000 }}",
            "fails at line 1: it would repeat 5,000,000 characters or items, "
            "more than the 256 KiB one part of an e-mail may hold",
        ),
        (
            "Hello\n{{ 3 * ['a', 'b'] * 10**9 }}",
            "fails at line 2: it would repeat 6,000,000,000 characters or items, "
            "more than the 256 KiB one part of an e-mail may hold",
        ),
        (
            "{% for i in range(30000) %}{{ user.display_name }}{% endfor %}",
            "renders to more than the 256 KiB one part of an e-mail may hold",
        ),
    ],
)
def test_a_template_that_writes_too_much_is_refused(source, problem):
    with pytest.raises(MailTemplateError) as raised:
        render_template("completed", sample_context(), overrides={"text": source})

    assert str(raised.value) == (
        f"The custom text template of the 'completed' e-mail {problem}; correct "
        "it in the e-mail templates settings."
    )
    assert validate_template(source, "text") == [problem.removeprefix("fails at ")]


def test_a_template_just_under_the_size_cap_renders():
    source = "{{ 'x' * (256 * 1024 - 1) }}\n"

    rendered = render_template("completed", sample_context(), {"html": source})

    assert len(rendered.html.encode()) == 256 * 1024


def test_render_rejects_an_unknown_event():
    with pytest.raises(ValueError) as raised:
        render_template("delivered", sample_context())

    assert str(raised.value) == (
        "Unknown e-mail event 'delivered'; known events are submitted, "
        "approval_needed, distribution_needed, approved, rejected, cancelled, "
        "completed, failed, reminder, escalation, expired, incident."
    )


def test_render_rejects_an_unknown_context_key():
    with pytest.raises(ValueError) as raised:
        render_template("submitted", {**sample_context(), "requester": {}})

    assert str(raised.value) == (
        "Unknown template variable(s) requester; known variables are approver, "
        "comment, delivery, link, request, site_name, task, user."
    )


@pytest.mark.parametrize(
    ("source", "kind", "problems"),
    [
        (
            "Hello {{ user.display_name }}\n{{ user.displayname }}",
            "text",
            [
                "line 2: unknown variable 'user.displayname'; user has "
                "display_name, email, username."
            ],
        ),
        (
            "{{ site_name }}\n\n{{ requester.email }}",
            "subject",
            [
                "line 3: unknown variable 'requester'; known variables are "
                "approver, comment, delivery, link, request, site_name, task, user."
            ],
        ),
        ("Hello\n{{ user.display_name }", "text", ["line 2: unexpected '}'"]),
        (
            "Hello\n\n{% endif %}",
            "text",
            ["line 3: Encountered unknown tag 'endif'."],
        ),
        (
            "{{ request.created|datetime }}\n{{ comment|shout }}",
            "html",
            ["line 2: No filter named 'shout'."],
        ),
        (
            "{{ ''.__class__.__mro__ }}",
            "html",
            [
                "line 1: access to '__mro__' is not allowed in templates.",
                "line 1: access to '__class__' is not allowed in templates.",
            ],
        ),
        (
            "{{ request['_sa_instance_state'] }}",
            "html",
            ["line 1: access to '_sa_instance_state' is not allowed in templates."],
        ),
        (
            "{{ request.business_key }}\n{{ [1, 2].append(3) }}",
            "text",
            [
                "line 2: the sandbox forbids it: access to attribute 'append' of "
                "'list' object is unsafe."
            ],
        ),
        (
            "{{ request.business_key }}\n\n{{ user.display_name + 1 }}",
            "text",
            ['line 3: TypeError: can only concatenate str (not "int") to str'],
        ),
        ("{{ task.due|datetime }} {{ request.created|date }}", "subject", []),
    ],
)
def test_validate_template_reports_readable_problems(source, kind, problems):
    assert validate_template(source, kind) == problems
