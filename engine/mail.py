"""E-mail: SMTP settings, message building, delivery and templates.

Nothing here touches the database. The outbox that stores messages and the
worker that sends them build on three steps: :func:`render_template` turns
an event and its context into a subject and two bodies, :func:`build_message`
makes a MIME message with a stable ``Message-ID``, and :func:`send_message`
hands it to the SMTP server, raising an error that says whether to retry.

Exceptions (all of them :class:`engine.errors.ProvisioningError`)::

    MailError
     +-- MailSettingsError   an SMTP_* setting is invalid (also a
     |                       ConfigurationError and a ValueError)
     +-- MailTemplateError   a template cannot be rendered (also a ValueError)
     +-- MailDeliveryError   the server did not take the message
          +-- TemporaryMailError   connection failed, 4xx: retry later
          +-- PermanentMailError   5xx, login or TLS failure: tell an admin
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import socket
import ssl
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import ConfigurationError, ProvisioningError
from engine.mail_templates import (
    DEFAULT_TEMPLATES,
    EVENTS,
    TEMPLATE_FILTERS,
    TEMPLATE_KINDS,
    TEMPLATE_VARIABLES,
    MailTemplate,
    sample_context,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "EVENTS",
    "TEMPLATE_FILTERS",
    "TEMPLATE_KINDS",
    "TEMPLATE_VARIABLES",
    "MailDeliveryError",
    "MailError",
    "MailSettingsError",
    "MailTemplate",
    "MailTemplateError",
    "PermanentMailError",
    "RenderedMail",
    "SmtpSettings",
    "TemporaryMailError",
    "build_message",
    "make_message_id",
    "render_template",
    "sample_context",
    "send_message",
    "test_connection",
    "validate_template",
]

logger = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]
SECURITY_MODES: tuple[str, ...] = ("none", "starttls", "tls")

# The usual port of each mode: 25 for relays, 587 for submission with
# STARTTLS, 465 for submission over implicit TLS (RFC 8314).
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
_DEFAULT_TIMEOUT = 10.0
_DEFAULT_SENDER = "Token Provisioning <provisioning@localhost>"

# Headers that build_message sets itself; letting callers add a second copy
# would produce a message that servers reject or clients show twice.
_RESERVED_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
)
# Python's folding of headers at 78 columns can break a subject right after
# "Subject:", which some clients then show with a leading space; RFC 5322
# allows 998 characters a line, and the body encoding is unaffected.
_MESSAGE_POLICY = policy.default.clone(max_line_length=998)
_MESSAGE_ID_PART = re.compile(r"[A-Za-z0-9._-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class MailError(ProvisioningError):
    """Base class of every error raised by this module."""

    code = "mail_error"


class MailSettingsError(MailError, ConfigurationError, ValueError):
    """An SMTP setting is missing or invalid."""

    code = ConfigurationError.code


class MailTemplateError(MailError, ValueError):
    """A template cannot be compiled or rendered."""

    code = "mail_template_invalid"


class MailDeliveryError(MailError):
    """The SMTP server did not accept a message.

    ``smtp_code`` and ``server_answer`` hold the server's reply when there
    was one (for example ``550`` and ``"550 5.1.1 Mailbox unknown"``), and
    are None when the connection itself failed.
    """

    code = "mail_delivery_failed"
    temporary: bool = False

    def __init__(
        self,
        message: str,
        *,
        smtp_code: int | None = None,
        server_answer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code
        self.server_answer = server_answer


class TemporaryMailError(MailDeliveryError):
    """Delivery failed for a reason that may pass; send again later."""

    temporary = True


class PermanentMailError(MailDeliveryError):
    """Delivery failed in a way that retrying will not fix; an admin must act."""


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server and who the mail is from.

    ``verify`` is True in every real deployment; ``ca_file`` names a PEM
    file of CA certificates to trust instead of the system's, for a server
    with a certificate from an internal CA (tests pass a self-signed one).
    """

    host: str = "localhost"
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = _DEFAULT_SENDER
    timeout: float = _DEFAULT_TIMEOUT
    ca_file: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise MailSettingsError(
                f"security is {self.security!r}; accepted values are "
                "none, starttls and tls."
            )
        if not 1 <= self.port <= 65535:
            raise MailSettingsError(
                f"port is {self.port}; it must be a whole number from 1 to 65535."
            )
        if not self.timeout > 0:
            raise MailSettingsError(
                f"timeout is {self.timeout}; it must be a number of seconds "
                "greater than 0."
            )
        if self.password and not self.username:
            raise MailSettingsError(
                "A password is set but no username; set both to log in, or neither."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read the settings from ``SMTP_*`` variables of ``environ``.

        Takes a mapping such as ``os.environ`` (the default). Unset or empty
        variables fall back to an unencrypted connection to localhost:25;
        without ``SMTP_PORT`` the port follows ``SMTP_SECURITY`` (25, 587 or
        465). ``SMTP_CA_FILE`` optionally names CA certificates to trust.

        Raises :class:`MailSettingsError` naming the variable and the values
        it accepts.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        security = (get("SMTP_SECURITY") or "none").lower()
        if security not in SECURITY_MODES:
            raise MailSettingsError(
                f"SMTP_SECURITY is {get('SMTP_SECURITY')!r}; accepted values are "
                "none, starttls and tls."
            )

        port_text = get("SMTP_PORT")
        if port_text is None:
            port = _DEFAULT_PORTS[security]
        elif port_text.isdigit() and 1 <= int(port_text) <= 65535:
            port = int(port_text)
        else:
            raise MailSettingsError(
                f"SMTP_PORT is {port_text!r}; it must be a whole number from "
                "1 to 65535, usually 25, 587 (starttls) or 465 (tls)."
            )

        timeout = _DEFAULT_TIMEOUT
        timeout_text = get("SMTP_TIMEOUT")
        if timeout_text is not None:
            try:
                timeout = float(timeout_text)
            except ValueError:
                timeout = 0.0
            if not 0 < timeout < float("inf"):
                raise MailSettingsError(
                    f"SMTP_TIMEOUT is {timeout_text!r}; it must be a number of "
                    "seconds greater than 0, for example 10."
                )

        sender = get("SMTP_SENDER") or _DEFAULT_SENDER
        if not _is_address(parseaddr(sender)[1]):
            raise MailSettingsError(
                f"SMTP_SENDER is {sender!r}; it must be an e-mail address such "
                "as provisioning@example.org, optionally with a name: "
                "Token Provisioning <provisioning@example.org>."
            )

        username = get("SMTP_USERNAME")
        # A password may legitimately start or end with spaces.
        password = env.get("SMTP_PASSWORD") or None
        if password and not username:
            raise MailSettingsError(
                "SMTP_PASSWORD is set but SMTP_USERNAME is empty; set both to "
                "log in to the SMTP server, or neither."
            )

        ca_file = get("SMTP_CA_FILE")
        if ca_file is not None and not os.path.isfile(ca_file):
            raise MailSettingsError(
                f"SMTP_CA_FILE is {ca_file!r}, but there is no such file; give "
                "the path of a PEM file with the CA certificates to trust."
            )

        return cls(
            host=get("SMTP_HOST") or "localhost",
            port=port,
            security=security,  # type: ignore[arg-type]
            username=username,
            password=password,
            sender=sender,
            timeout=timeout,
            ca_file=ca_file,
        )

    @property
    def sender_address(self) -> str:
        """The bare address of ``sender``, used as the envelope sender."""
        return parseaddr(self.sender)[1]

    @property
    def sender_domain(self) -> str:
        """The domain of the sender address, used in Message-IDs."""
        return self.sender_address.rpartition("@")[2]


def _is_address(address: str) -> bool:
    """Tell whether ``address`` looks like local@domain."""
    local, at, domain = address.rpartition("@")
    return bool(local and at and domain) and not any(c.isspace() for c in address)


# --- Messages ---------------------------------------------------------------


def make_message_id(outbox_id: str, domain: str) -> str:
    """Return the Message-ID ``<outbox-ID@domain>`` of an outbox entry.

    The same outbox entry always gets the same Message-ID, so a message
    sent twice after a lost server answer can be recognised as a duplicate.
    Raises ValueError if either part would make an invalid Message-ID.
    """
    if not _MESSAGE_ID_PART.fullmatch(str(outbox_id)):
        raise ValueError(
            f"outbox id {outbox_id!r} cannot be part of a Message-ID; use "
            "letters, digits, '.', '_' and '-' only."
        )
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(
            f"domain {domain!r} cannot be part of a Message-ID; use a host "
            "name such as example.org."
        )

    return f"<outbox-{outbox_id}@{domain}>"


def build_message(
    *,
    sender: str,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build a message with a plain text body and, if given, an HTML one.

    Takes the From address, the recipients, the subject, the bodies, a
    Message-ID (from :func:`make_message_id`; a random one if None), extra
    headers and the Date (now if None). With ``html`` the message is
    multipart/alternative, text first so that clients prefer the HTML.
    Every message is marked ``Auto-Submitted: auto-generated`` so that
    out-of-office replies are not sent back to it (RFC 3834).

    Raises ValueError when there is no recipient, a header value contains
    a line break, or ``headers`` repeats a header set here.
    """
    if not to:
        raise ValueError("A message needs at least one recipient in 'to'.")
    for name in headers or {}:
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(
                f"Header {name!r} is set by build_message; pass it as an "
                "argument instead of in 'headers'."
            )

    message = EmailMessage(policy=_MESSAGE_POLICY)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(
        domain=parseaddr(sender)[1].rpartition("@")[2] or None
    )
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = value

    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")

    return message


# --- Delivery -----------------------------------------------------------------


class _ReplyRecorder:
    """Keep the server's answer to DATA, which smtplib otherwise drops."""

    last_reply: str = ""

    def data(self, msg: Any) -> tuple[int, bytes]:
        code, text = super().data(msg)  # type: ignore[misc]
        self.last_reply = _format_answer(code, text)
        return code, text


class _SMTP(_ReplyRecorder, smtplib.SMTP):
    pass


class _SMTPSSL(_ReplyRecorder, smtplib.SMTP_SSL):
    pass


Step = Literal["connect", "starttls", "login", "send"]


def send_message(settings: SmtpSettings, message: EmailMessage) -> str:
    """Send ``message`` through the SMTP server described by ``settings``.

    The envelope sender is the address of ``settings.sender`` (bounces go
    there), whatever the From header says; the recipients are those of
    the To, Cc and Bcc headers (Bcc is not transmitted). Returns the
    server's final answer, for example ``"250 2.0.0 Ok: queued as 4F2A1"``.

    Raises :class:`TemporaryMailError` when the server cannot be reached or
    answers 4xx, and :class:`PermanentMailError` for 5xx answers, a failed
    login or TLS handshake, or when some recipients were refused (the
    others have received the message, so it must not be sent again).
    """
    recipients = [
        address
        for _, address in getaddresses(
            message.get_all("To", [])
            + message.get_all("Cc", [])
            + message.get_all("Bcc", [])
        )
        if address
    ]
    if not recipients:
        raise ValueError("The message has no recipient in To, Cc or Bcc.")

    def deliver(smtp: _SMTP, answer: str) -> str:
        refused = smtp.send_message(message, from_addr=settings.sender_address)
        if refused:
            raise _partial_refusal(settings, recipients, refused)
        return smtp.last_reply

    answer = _run_session(settings, deliver, retry=True)
    # DEBUG: the outbox logs the one INFO line per message that operators read.
    logger.debug(
        "Sent e-mail %s to %s through %s:%d: %s",
        message["Message-ID"],
        ", ".join(recipients),
        settings.host,
        settings.port,
        answer,
        extra={"message_id": message["Message-ID"], "smtp_answer": answer},
    )
    return answer


def test_connection(settings: SmtpSettings, to: str | None = None) -> str:
    """Connect to the SMTP server, log in, and optionally send a test mail.

    Takes the settings to try and, optionally, an address to send a short
    test message to. Returns the server's answer to the last command: the
    test message's acceptance, else the login, else a NOOP.

    Raises the same :class:`TemporaryMailError` and
    :class:`PermanentMailError` as :func:`send_message`.
    """

    def check(smtp: _SMTP, answer: str) -> str:
        if to is None:
            if settings.username:
                return answer
            code, text = smtp.noop()
            return _format_answer(code, text)

        message = build_message(
            sender=settings.sender,
            to=[to],
            subject="Test message from token provisioning",
            text=(
                "This is a test message from token provisioning.\n"
                f"It was sent through {settings.host}:{settings.port} "
                f"({settings.security}). If you can read it, outgoing mail "
                "works.\n"
            ),
        )
        # With a single recipient a refusal raises SMTPRecipientsRefused, so
        # there is no partial refusal to look for here.
        smtp.send_message(message, from_addr=settings.sender_address)
        return smtp.last_reply

    answer = _run_session(settings, check, retry=False)
    logger.info(
        "Tested SMTP connection to %s:%d: %s", settings.host, settings.port, answer
    )
    return answer


# pytest would otherwise collect this function as a test wherever a test
# module imports it by name.
test_connection.__test__ = False  # type: ignore[attr-defined]


def _run_session(
    settings: SmtpSettings,
    work: Callable[[_SMTP, str], str],
    *,
    retry: bool,
) -> str:
    """Connect, secure and log in as configured, run ``work``, then quit."""
    step: Step = "connect"
    smtp: _SMTP | None = None
    try:
        context = _ssl_context(settings) if settings.security != "none" else None
        if settings.security == "tls":
            smtp = _SMTPSSL(
                settings.host, settings.port, timeout=settings.timeout, context=context
            )
        else:
            smtp = _SMTP(settings.host, settings.port, timeout=settings.timeout)

        if settings.security == "starttls":
            step = "starttls"
            smtp.starttls(context=context)

        answer = ""
        if settings.username:
            step = "login"
            code, text = smtp.login(settings.username, settings.password or "")
            answer = _format_answer(code, text)

        step = "send"
        return work(smtp, answer)
    except MailDeliveryError:
        raise
    except (smtplib.SMTPException, OSError) as error:
        raise _delivery_error(error, settings, step, retry=retry) from error
    finally:
        if smtp is not None:
            _quit_quietly(smtp)


def _ssl_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Return the client TLS context for ``settings``."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as error:
        raise PermanentMailError(
            f"The CA file {settings.ca_file} cannot be used ({error}); set "
            "SMTP_CA_FILE to a readable PEM file of CA certificates."
        ) from error

    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    return context


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """End the session; the outcome is already decided, so ignore failures."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _format_answer(code: int, text: bytes | str) -> str:
    """Return a server reply as one line: code and text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join([str(code), *text.split()])


def _partial_refusal(
    settings: SmtpSettings,
    recipients: list[str],
    refused: Mapping[str, tuple[int, bytes]],
) -> PermanentMailError:
    """Describe recipients refused while others accepted the message."""
    accepted = [address for address in recipients if address not in refused]
    code, text = next(iter(refused.values()))
    return PermanentMailError(
        f"The SMTP server {settings.host}:{settings.port} refused the "
        f"recipient {_describe_refused(refused)}; check the e-mail address of "
        "that user. The message "
        f"was delivered to {', '.join(accepted)}, so it must not be sent again.",
        smtp_code=code,
        server_answer=_format_answer(code, text),
    )


def _describe_refused(refused: Mapping[str, tuple[int, bytes]]) -> str:
    """List refused recipients with the server's answer for each."""
    return ", ".join(
        f"{address} ({_format_answer(code, text)})"
        for address, (code, text) in refused.items()
    )


def _delivery_error(
    error: OSError, settings: SmtpSettings, step: Step, *, retry: bool
) -> MailDeliveryError:
    """Translate an smtplib or socket error into a delivery error."""
    server = f"The SMTP server {settings.host}:{settings.port}"
    tls_hint = ""
    if step == "connect" and settings.security != "tls":
        # A client that waits for the greeting of a server that waits for a
        # TLS handshake sees silence: the classic symptom of port 465 used
        # without SMTP_SECURITY=tls.
        tls_hint = (
            "if the port expects implicit TLS (usually 465), set SMTP_SECURITY=tls"
        )
    # smtplib reports a read that timed out as a closed connection.
    if isinstance(error, smtplib.SMTPServerDisconnected) and isinstance(
        error.__context__, TimeoutError
    ):
        error = error.__context__

    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = error.recipients
        code, text = next(iter(refused.values()), (0, b""))
        temporary = all(400 <= c < 500 for c, _ in refused.values())
        what = "temporarily refused" if temporary else "refused"
        return _by_kind(
            temporary,
            f"{server} {what} the recipient {_describe_refused(refused)}",
            "" if temporary else "check the e-mail address of that user",
            code,
            _format_answer(code, text),
            retry,
        )

    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        answer = _format_answer(code, error.smtp_error)
        temporary = not 500 <= code < 600
        if isinstance(error, smtplib.SMTPAuthenticationError):
            happened = f"{server} rejected the login of user {settings.username!r}"
            advice = "check SMTP_USERNAME and SMTP_PASSWORD"
        elif isinstance(error, smtplib.SMTPSenderRefused):
            happened = f"{server} refused the sender address {error.sender}"
            advice = (
                "set SMTP_USERNAME and SMTP_PASSWORD, as the server requires a login"
                if code == 530
                else "check SMTP_SENDER and that the SMTP account may send as "
                "this address"
            )
        elif isinstance(error, smtplib.SMTPDataError):
            happened = f"{server} refused the message"
            advice = "its answer says why, for example a size limit or a content filter"
        elif isinstance(error, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
            happened = f"{server} refused the session"
            advice = "check SMTP_HOST/SMTP_PORT and that this host may use it"
        elif step == "starttls":
            happened = f"{server} refused STARTTLS"
            advice = "check SMTP_SECURITY and SMTP_PORT"
        else:
            happened = f"{server} refused the {step} step"
            advice = "its answer says why"
        if temporary:
            # A 4xx answer describes a passing state of the server, which
            # no setting on this side can change.
            happened = happened.replace(" refused ", " temporarily refused ", 1)
            happened = happened.replace(" rejected ", " temporarily rejected ", 1)
            advice = ""
        return _by_kind(
            temporary, f"{happened} ({answer})", advice, code, answer, retry
        )

    if isinstance(error, smtplib.SMTPNotSupportedError):
        if step == "starttls":
            advice = (
                "set SMTP_SECURITY=tls if the port expects implicit TLS (usually "
                "465), or none only for a trusted relay"
            )
            return _by_kind(
                False, f"{server} does not offer STARTTLS", advice, None, None, retry
            )
        if step == "login":
            advice = (
                "use SMTP_SECURITY=starttls or tls, or leave SMTP_USERNAME empty "
                "if the server needs no login"
            )
            return _by_kind(
                False,
                f"{server} does not offer login (AUTH) on this connection",
                advice,
                None,
                None,
                retry,
            )
        return _by_kind(
            False, f"{server} cannot send this message ({error})", "", None, None, retry
        )

    if isinstance(error, smtplib.SMTPServerDisconnected):
        return _by_kind(
            True,
            f"{server} closed the connection unexpectedly during the {step} step",
            tls_hint,
            None,
            None,
            retry,
        )

    if isinstance(error, smtplib.SMTPException):
        return _by_kind(
            False, f"{server} could not be used ({error})", "", None, None, retry
        )

    if isinstance(error, ssl.SSLCertVerificationError):
        advice = (
            "set SMTP_HOST to a name in the server's certificate, and "
            "SMTP_CA_FILE to the CA that issued it if it is not a public one"
        )
        return _by_kind(
            False,
            f"The certificate of the SMTP server {settings.host}:{settings.port} "
            f"could not be verified ({error.verify_message})",
            advice,
            None,
            None,
            retry,
        )

    if isinstance(error, ssl.SSLError):
        advice = (
            "check that SMTP_SECURITY matches the port: tls for implicit TLS "
            "(usually 465), starttls for 587 or 25"
        )
        return _by_kind(
            False,
            f"The TLS handshake with {settings.host}:{settings.port} failed "
            f"({error.reason or error})",
            advice,
            None,
            None,
            retry,
        )

    if isinstance(error, ConnectionRefusedError):
        happened = f"{server} refused the connection"
        advice = "check SMTP_HOST/SMTP_PORT and that the server is running"
    elif isinstance(error, TimeoutError):
        happened = (
            f"{server} did not answer within {settings.timeout:g} seconds"
            f" during the {step} step"
        )
        advice = "check SMTP_HOST/SMTP_PORT, SMTP_TIMEOUT and any firewall between"
        if tls_hint:
            advice += "; " + tls_hint
    elif isinstance(error, socket.gaierror):
        happened = f"The SMTP host name {settings.host!r} could not be resolved"
        advice = "check SMTP_HOST and the DNS configuration"
    else:
        happened = f"{server} could not be reached ({error})"
        advice = "check SMTP_HOST/SMTP_PORT and the network"
    return _by_kind(True, happened, advice, None, None, retry)


def _by_kind(
    temporary: bool,
    happened: str,
    advice: str,
    code: int | None,
    answer: str | None,
    retry: bool,
) -> MailDeliveryError:
    """Assemble the error's sentence and pick its class."""
    message = f"{happened}; {advice}." if advice else f"{happened}."
    if temporary:
        if retry:
            message += " The message will be retried."
        return TemporaryMailError(message, smtp_code=code, server_answer=answer)
    return PermanentMailError(message, smtp_code=code, server_answer=answer)


# --- Templates ----------------------------------------------------------------


class RenderedMail(NamedTuple):
    """The subject and bodies of one message, ready for build_message."""

    subject: str
    text: str
    html: str


def _format_datetime(value: Any) -> str:
    """Format a datetime for people: '2024-05-02 14:03 UTC'."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.strftime("%Y-%m-%d %H:%M %Z").rstrip()
    return "" if value is None else str(value)


def _format_date(value: Any) -> str:
    """Format a date or datetime for people: '2024-05-02'."""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    return "" if value is None else str(value)


#: The most one rendered part (subject, text or HTML) may hold, in bytes of
#: UTF-8. Real mails are a few KiB; a template that writes more is a mistake
#: that would fill the outbox, the SMTP server and every recipient's mailbox.
MAX_RENDERED_SIZE = 256 * 1024
_LIMIT = f"{MAX_RENDERED_SIZE // 1024} KiB one part of an e-mail may hold"


class _TooLarge(Exception):
    """A template's output would pass :data:`MAX_RENDERED_SIZE`."""


class _MailSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, also refusing ``'x' * 10**9`` before it takes the memory.

    Intercepting ``*`` also stops Jinja from folding a constant repetition
    at compile time, which would build the huge string while validating.
    """

    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_RENDERED_SIZE
                ):
                    raise _TooLarge(
                        f"it would repeat {len(sequence) * times:,} characters "
                        f"or items, more than the {_LIMIT}"
                    )
        return super().call_binop(context, operator, left, right)


def _render_capped(template: Template, values: Mapping[str, Any]) -> str:
    """Render ``template``, stopping once its output passes the size cap."""
    chunks = []
    size = 0
    for chunk in template.generate(values):
        size += len(chunk.encode("utf-8", "surrogatepass"))
        if size > MAX_RENDERED_SIZE:
            raise _TooLarge(f"renders to more than the {_LIMIT}")
        chunks.append(chunk)
    return "".join(chunks)


def _environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    """Create the sandbox templates render in."""
    environment = _MailSandbox(
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["datetime"] = _format_datetime
    environment.filters["date"] = _format_date
    return environment


# HTML is escaped so that a comment typed by an approver cannot inject
# markup; subject and text are not HTML, where escaping would show "&amp;".
_ENVIRONMENTS = {
    "subject": _environment(autoescape=False),
    "text": _environment(autoescape=False),
    "html": _environment(autoescape=True),
}

_TOP_LEVEL_VARIABLES = frozenset(name.split(".")[0] for name in TEMPLATE_VARIABLES)
_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(
        key.partition(".")[2]
        for key in TEMPLATE_VARIABLES
        if key.startswith(name + ".")
    )
    for name in _TOP_LEVEL_VARIABLES
}


@lru_cache(maxsize=256)
def _compile(kind: str, source: str) -> Template:
    """Compile a template once; the outbox renders the same ones repeatedly."""
    return _ENVIRONMENTS[kind].from_string(source)


def render_template(
    event: str,
    context: Mapping[str, Any],
    overrides: Mapping[str, str] | None = None,
) -> RenderedMail:
    """Render the subject, text and HTML body of the e-mail for ``event``.

    Takes one of :data:`EVENTS`, a context whose keys are the top-level
    names of :data:`TEMPLATE_VARIABLES` (missing ones are None), and
    optionally an administrator's sources for some of ``"subject"``,
    ``"text"`` and ``"html"`` that replace the defaults. The subject comes
    back as a single line. Pass plain values (dicts, strings, datetimes),
    as :func:`sample_context` does, never ORM objects: the sandbox stops
    private attributes and changes to built-in containers, but it would let
    a template call the public methods of any other object.

    Raises ValueError for an unknown event, kind or context key, and
    :class:`MailTemplateError` naming the event, template and line when a
    template does not compile, uses an unknown variable or attempts
    something the sandbox forbids.
    """
    if event not in DEFAULT_TEMPLATES:
        raise ValueError(
            f"Unknown e-mail event {event!r}; known events are {', '.join(EVENTS)}."
        )
    unknown_keys = sorted(set(context) - _TOP_LEVEL_VARIABLES)
    if unknown_keys:
        raise ValueError(
            f"Unknown template variable(s) {', '.join(unknown_keys)}; known "
            f"variables are {', '.join(sorted(_TOP_LEVEL_VARIABLES))}."
        )
    unknown_kinds = sorted(set(overrides or {}) - set(TEMPLATE_KINDS))
    if unknown_kinds:
        raise ValueError(
            f"Unknown template kind(s) {', '.join(unknown_kinds)}; known kinds "
            f"are {', '.join(TEMPLATE_KINDS)}."
        )

    values = dict.fromkeys(_TOP_LEVEL_VARIABLES)
    values.update(context)
    default = DEFAULT_TEMPLATES[event]
    rendered = {}
    for kind in TEMPLATE_KINDS:
        custom = (overrides or {}).get(kind)
        source = custom if custom is not None else getattr(default, kind)
        origin = "custom" if custom is not None else "default"
        try:
            rendered[kind] = _render_capped(_compile(kind, source), values)
        # An administrator's template can fail in any way Python expressions
        # can (a division by zero, adding text to a number), and each of
        # them must reach the administrator as a message, not a crash.
        except Exception as error:
            raise MailTemplateError(
                f"The {origin} {kind} template of the {event!r} e-mail "
                f"{_describe_template_error(error)}; correct it in the e-mail "
                "templates settings."
            ) from error

    return RenderedMail(
        subject=" ".join(rendered["subject"].split()),
        text=rendered["text"],
        html=rendered["html"],
    )


def validate_template(source: str, kind: str) -> list[str]:
    """Check an administrator's template before it is saved.

    Takes the Jinja2 source and its kind (``"subject"``, ``"text"`` or
    ``"html"``). Returns readable problems, each starting with its line
    number: syntax errors, variables or fields outside
    :data:`TEMPLATE_VARIABLES`, attribute names the sandbox forbids, and
    errors of a trial render with :func:`sample_context`. An empty list
    means the template is fine. Raises ValueError for an unknown kind.
    """
    if kind not in TEMPLATE_KINDS:
        raise ValueError(
            f"Unknown template kind {kind!r}; known kinds are "
            f"{', '.join(TEMPLATE_KINDS)}."
        )
    # Compiling, not only parsing, also catches unknown filters and tests.
    try:
        template = _compile(kind, source)
        tree = _ENVIRONMENTS[kind].parse(source)
    except TemplateSyntaxError as error:
        return [f"line {error.lineno}: {error.message}"]

    problems = _unknown_names(tree) + _unknown_attributes(tree)
    if problems:
        return sorted(problems, key=_line_of)

    try:
        _render_capped(template, sample_context())
    except Exception as error:  # any failure of the template; see render_template
        return [_describe_template_error(error).removeprefix("fails at ")]
    return []


def _unknown_names(tree: nodes.Template) -> list[str]:
    """Report top-level names the template reads but nobody provides."""
    known = ", ".join(sorted(_TOP_LEVEL_VARIABLES))
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree) - _TOP_LEVEL_VARIABLES):
        line = min(
            node.lineno
            for node in tree.find_all(nodes.Name)
            if node.name == name and node.ctx == "load"
        )
        problems.append(
            f"line {line}: unknown variable {name!r}; known variables are {known}."
        )
    return problems


def _unknown_attributes(tree: nodes.Template) -> list[str]:
    """Report forbidden attributes and misspelt fields of known variables."""
    problems = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            attribute = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attribute = node.arg.value
        else:
            continue

        if attribute.startswith("_"):
            problems.append(
                f"line {node.lineno}: access to {attribute!r} is not allowed "
                "in templates."
            )
            continue
        target = node.node
        if (
            isinstance(target, nodes.Name)
            and _FIELDS.get(target.name)
            and attribute not in _FIELDS[target.name]
        ):
            fields = ", ".join(sorted(_FIELDS[target.name]))
            problems.append(
                f"line {node.lineno}: unknown variable "
                f"'{target.name}.{attribute}'; {target.name} has {fields}."
            )
    return problems


def _line_of(problem: str) -> int:
    """Return the line number a problem message starts with."""
    return int(problem.split(":", 1)[0].removeprefix("line "))


def _describe_template_error(error: Exception) -> str:
    """Say where and why rendering a template failed."""
    if isinstance(error, TemplateSyntaxError):
        return f"fails at line {error.lineno}: {error.message}"

    # Jinja rewrites tracebacks so that frames of the template carry the
    # template's own line numbers; the innermost one is where it failed.
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename == "<template>"
    ]
    if isinstance(error, _TooLarge):
        # Without a line, the output as a whole rather than one expression is
        # too long.
        return f"fails at line {lines[-1]}: {error}" if lines else str(error)

    where = f"line {lines[-1]}" if lines else "an unknown line"
    if isinstance(error, SecurityError):
        reason = f"the sandbox forbids it: {error.message}"
    elif isinstance(error, UndefinedError):
        reason = f"unknown variable or field: {error.message}"
    elif isinstance(error, TemplateError):
        reason = str(error.message or error)
    else:
        reason = f"{type(error).__name__}: {error}"
    return f"fails at {where}: {reason}"
