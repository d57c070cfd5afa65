"""Tables of the e-mail notifications: the outbox, template overrides, SMTP.

The outbox is the hand-over point between the engine and the SMTP server.
A row is written in the transaction of the state change that causes the
mail; the worker then moves it along this lifecycle::

    pending --claim--> sending --accepted--> sent
       ^                  |
       +--temporary error-+--permanent error or too many attempts--> failed
                                                  (resend) --> pending

A row in ``sending`` whose lease has expired belongs to a worker that died;
any worker may claim it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.models import Base, utcnow


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"

    ALL = (PENDING, SENDING, SENT, FAILED)


def new_outbox_id() -> str:
    """Return a fresh outbox id, unique across installations."""
    return uuid.uuid4().hex


class OutboxMessage(Base):
    """One e-mail to one recipient, rendered when it was caused."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        Index("ix_mail_outbox_due", "status", "next_attempt_at"),
        Index("ix_mail_outbox_instance", "instance_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_outbox_id)
    event: Mapped[str] = mapped_column(String(50))
    request_type: Mapped[str] = mapped_column(String(100), default="")
    instance_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("process_instance.id"),
    )
    business_key: Mapped[str] = mapped_column(String(200), default="")
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    smtp_answer: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class MailTemplateOverride(Base):
    """An administrator's version of one event's template.

    ``request_type`` is a process key such as ``new_token``, or ``""`` for
    the override that applies to every request type without its own.
    A None source keeps the default for that part.
    """

    __tablename__ = "mail_template_override"
    __table_args__ = (UniqueConstraint("event", "request_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    request_type: Mapped[str] = mapped_column(String(100), default="")
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(150), default="")


class StoredSmtpSettings(Base):
    """SMTP settings an administrator saved; they replace the SMTP_* variables.

    There is at most one row (id 1). The password is encrypted with the
    token encryption key and never leaves the engine in clear except to log
    in to the server.
    """

    __tablename__ = "mail_smtp_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(300))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(20))
    username: Mapped[str | None] = mapped_column(String(300))
    password_ciphertext: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(400))
    timeout: Mapped[int] = mapped_column(Integer, default=10)
    ca_file: Mapped[str | None] = mapped_column(String(1000))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(150), default="")
