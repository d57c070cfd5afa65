"""Fixtures for the notification tests: settings, an organisation, SMTP servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from smtp_server import SmtpServer
from sqlalchemy import select

from engine import services
from engine.config import Settings
from engine.db import Database
from engine.errors import ServiceError
from engine.notifications import OutboxMessage, configure, deliver_pending
from engine.provisioning import handlers

BASE_URL = "https://tokens.example.org"


def notification_settings(database: Database, tmp_path: Path, **changes) -> Settings:
    """Return settings for ``database`` with a base URL the mails link to."""
    settings = Settings(
        database_url=database.url.render_as_string(hide_password=False),
        instance_path=tmp_path / "instance",
        secret_key="test-secret-key",
        token_encryption_key="test-token-encryption-key",
        base_url=BASE_URL,
    )
    settings = replace(settings, **changes)
    configure(settings)
    return settings


def outbox(database: Database) -> list[OutboxMessage]:
    """Return every outbox row, oldest first, detached."""
    with database.read() as session:
        rows = list(
            session.scalars(
                select(OutboxMessage).order_by(
                    OutboxMessage.created_at, OutboxMessage.recipient
                )
            )
        )
        session.expunge_all()
        return rows


def sent_to(server: SmtpServer) -> list[tuple[str, str]]:
    """Return (event, recipient) of every message the server accepted, sorted."""
    return sorted(
        (mail.message["X-Provisioning-Event"], rcpt)
        for mail in server.messages
        for rcpt in mail.rcpt_tos
    )


def deliver(database: Database, settings: Settings, server: SmtpServer) -> int:
    """Send everything due through ``server``."""
    return deliver_pending(database, settings, smtp=server.settings())


#: The service task that assigns and ships a hardware token.
SHIPPING = "assign_and_ship_token"


class ShippingOutage:
    """The shipping service of hardware tokens, failing while ``down`` is set."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self, call: services.ServiceCall) -> None:
        if self.down:
            raise ServiceError("The shipping service is down; retry once it is back.")
        handlers.assign_and_ship_token(call)


@contextmanager
def shipping_outage() -> Iterator[ShippingOutage]:
    """Make shipping fail, as a passing outage would, until the block ends."""
    outage = ShippingOutage()
    services.register(SHIPPING)(outage)
    try:
        yield outage
    finally:
        services.register(SHIPPING)(handlers.assign_and_ship_token)
