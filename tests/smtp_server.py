"""Real SMTP servers on 127.0.0.1 for tests, built on aiosmtpd.

Import the ``smtp_server_factory`` fixture into a conftest, or wrap
:func:`smtp_servers` in a fixture of the test module, to start servers that
stop at the end of the test::

    @pytest.fixture
    def start_smtp_server(tmp_path):
        with smtp_servers(tmp_path) as start:
            yield start

    def test_something(start_smtp_server):
        server = start_smtp_server(security="starttls", users={"alice": "pw"})
        send_message(server.settings(username="alice", password="pw"), message)
        assert server.messages[0].rcpt_tos == ["bob@example.org"]

:func:`running_smtp_server` runs a single server as a context manager. A server
records every accepted message, and can be told to refuse a recipient or to
answer DATA with a temporary failure.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.mail import SmtpSettings

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side TLS context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps messages and misbehaves on request."""

    messages: list[ReceivedMail] = field(default_factory=list)
    refused_recipients: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    def refuse_recipient(
        self, address: str, reply: str = "550 5.1.1 Mailbox unavailable"
    ) -> None:
        """Answer RCPT TO for ``address`` with ``reply`` (550 by default)."""
        self.refused_recipients[address] = reply

    def fail_data(self, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer every DATA with ``reply`` instead of accepting the message."""
        self.data_reply = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        reply = self.refused_recipients.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        raw = envelope.original_content or envelope.content
        self.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                # SMTP carries CRLF line ends; tests compare with the "\n"
                # the message was built with, as a mail client would show it.
                message=message_from_bytes(
                    raw.replace(b"\r\n", b"\n"), policy=policy.default
                ),
                raw=raw,
            )
        )
        return f"250 2.0.0 Ok: queued as {len(self.messages)}"


@dataclass
class SmtpServer:
    """A running test server and how to reach it."""

    host: str
    port: int
    security: str
    handler: RecordingHandler
    tls: TlsFiles | None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.handler.messages

    def settings(self, **changes: Any) -> SmtpSettings:
        """Return SmtpSettings for this server, trusting its certificate."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "sender": "Token Provisioning <provisioning@example.org>",
            "timeout": 5.0,
            "ca_file": str(self.tls.cert_file) if self.tls else None,
        }
        values.update(changes)
        return SmtpSettings(**values)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def make_self_signed_certificate(directory: Path) -> TlsFiles:
    """Write a fresh self-signed certificate and key into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(HOST)),
                ]
            ),
            critical=False,
        )
        # The certificate is its own CA, so the client can trust it as one;
        # these extensions keep OpenSSL's strict verification satisfied.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )

    cert_file = directory / "smtp-cert.pem"
    key_file = directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert_file=cert_file, key_file=key_file)


def _authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    """Accept LOGIN and PLAIN credentials found in ``users``."""

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode()
        password = auth_data.password.decode()
        return AuthResult(success=users.get(username) == password, handled=False)

    return authenticate


@contextmanager
def running_smtp_server(
    *,
    security: str = "none",
    users: dict[str, str] | None = None,
    tls_directory: Path | None = None,
) -> Iterator[SmtpServer]:
    """Run an SMTP server on a free port of 127.0.0.1 until the block ends.

    ``security`` is "none", "starttls" (offered, with a self-signed
    certificate) or "tls" (implicit TLS). With ``users`` the server offers
    AUTH LOGIN and PLAIN and checks those usernames and passwords. TLS
    needs ``tls_directory`` to write the certificate into.
    """
    if security not in ("none", "starttls", "tls"):
        raise ValueError(f"security must be none, starttls or tls, not {security!r}")
    tls = None
    if security != "none":
        if tls_directory is None:
            raise ValueError("A TLS server needs a tls_directory for its certificate.")
        tls = make_self_signed_certificate(tls_directory)

    handler = RecordingHandler()
    port = free_port()
    options: dict[str, Any] = {"hostname": HOST, "port": port}
    if users is not None:
        options["authenticator"] = _authenticator(users)
    if security == "starttls":
        options["tls_context"] = tls.server_context()
    elif security == "tls":
        options["ssl_context"] = tls.server_context()
        # aiosmtpd counts only STARTTLS as encryption when deciding whether
        # to offer AUTH, so on an implicit TLS connection it has to be told
        # that the connection is already encrypted.
        options["auth_require_tls"] = False

    controller = Controller(handler, **options)
    controller.start()
    try:
        yield SmtpServer(
            host=HOST, port=port, security=security, handler=handler, tls=tls
        )
    finally:
        controller.stop()


@contextmanager
def smtp_servers(directory: Path) -> Iterator[Callable[..., SmtpServer]]:
    """Yield a function that starts servers; all of them stop on exit.

    The function takes the keyword arguments ``security`` and ``users`` of
    :func:`running_smtp_server`; certificates go into ``directory``.
    """
    with ExitStack() as stack:
        count = 0

        def start(
            *, security: str = "none", users: dict[str, str] | None = None
        ) -> SmtpServer:
            nonlocal count
            count += 1
            tls_directory = directory / f"smtp-{count}"
            tls_directory.mkdir()
            return stack.enter_context(
                running_smtp_server(
                    security=security, users=users, tls_directory=tls_directory
                )
            )

        yield start


@pytest.fixture
def smtp_server_factory(tmp_path: Path) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers on demand; all of them stop after the test."""
    with smtp_servers(tmp_path) as start:
        yield start
