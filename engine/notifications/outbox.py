"""The e-mail outbox: messages written with the state change, sent by workers.

Delivery is at most once per claim, and a claim is a lease:

1. *Claim* (one short write transaction): pick a due row, lock it on
   PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so that concurrent workers
   take different rows without waiting, mark it ``sending`` with a fresh
   claim token and ``lease_until``, commit.
2. *Send* outside any transaction, so that a slow SMTP server holds no lock.
3. *Finish* (another write transaction): record the outcome only if the
   row still carries our claim token.

A worker that dies between 1 and 3 leaves the row ``sending``; when its
lease expires another worker claims it again. If the dead worker had
already handed the message to the server, it goes out twice. That is the
price of never losing a committed mail; the message keeps the same
Message-ID (``<outbox-ID@sender-domain>``) and Date header on every
attempt so that receivers and archives can recognise the duplicate.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.db import Database
from engine.errors import ConfigurationError, ConflictError, NotFound
from engine.mail import (
    MailDeliveryError,
    MailError,
    RenderedMail,
    SmtpSettings,
    TemporaryMailError,
    build_message,
    make_message_id,
    send_message,
)
from engine.models import ProcessInstance, utcnow

from .models import OutboxMessage, OutboxStatus
from .recipients import Recipient
from .smtp import current_smtp_settings

logger = logging.getLogger(__name__)

#: How long a claim protects a row from other workers. It must be longer
#: than the slowest SMTP exchange (connect, TLS, login, DATA, each bounded
#: by the SMTP timeout), or a slow send would be claimed again meanwhile.
DEFAULT_LEASE = timedelta(minutes=5)
#: Attempts before a temporarily failing message is given up as failed.
MAX_ATTEMPTS = 8
#: The first retry waits this long; each further one twice as long.
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)


@dataclass(frozen=True)
class Claim:
    """A row a worker has claimed: what to send and the token proving the claim."""

    id: str
    token: str
    attempts: int
    event: str
    recipient: str
    recipient_name: str
    subject: str
    text_body: str
    html_body: str
    created_at: datetime


def enqueue(
    session: Session,
    *,
    event: str,
    recipient: Recipient,
    rendered: RenderedMail,
    instance: ProcessInstance | None = None,
    business_key: str = "",
) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction and return it."""
    message = OutboxMessage(
        event=event,
        request_type=instance.process_key if instance is not None else "",
        instance_id=instance.id if instance is not None else None,
        business_key=business_key,
        recipient=recipient.address,
        recipient_name=recipient.name,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
        last_error="",
        smtp_answer="",
    )
    session.add(message)
    return message


def retry_delay(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed attempt."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def claim_next(
    db: Database, *, now: datetime | None = None, lease: timedelta = DEFAULT_LEASE
) -> Claim | None:
    """Claim the next due message for this worker, or return None.

    Due are pending rows whose next attempt has come, and rows in
    ``sending`` whose lease has expired (their worker died).
    """
    now = now or utcnow()
    with db.write() as session:
        query = (
            select(OutboxMessage)
            .where(
                or_(
                    and_(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.next_attempt_at <= now,
                    ),
                    and_(
                        OutboxMessage.status == OutboxStatus.SENDING,
                        OutboxMessage.lease_until <= now,
                    ),
                )
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.created_at)
            .limit(1)
        )
        # SQLite has one writer at a time (BEGIN IMMEDIATE), so the claim is
        # already exclusive there; PostgreSQL needs the row lock.
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        row = session.scalars(query).first()
        if row is None:
            return None

        if row.status == OutboxStatus.SENDING:
            logger.warning(
                "E-mail %s: the lease of an earlier claim expired; sending again",
                row.id,
                extra={"outbox_id": row.id},
            )
        row.status = OutboxStatus.SENDING
        row.claim_token = uuid.uuid4().hex
        row.lease_until = now + lease
        row.attempts += 1
        row.updated_at = now
        return Claim(
            id=row.id,
            token=row.claim_token,
            attempts=row.attempts,
            event=row.event,
            recipient=row.recipient,
            recipient_name=row.recipient_name,
            subject=row.subject,
            text_body=row.text_body,
            html_body=row.html_body,
            created_at=row.created_at,
        )


def release(db: Database, claim: Claim) -> bool:
    """Give a claimed message back unsent, as if it had never been claimed."""
    with db.write() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == claim.id,
                OutboxMessage.claim_token == claim.token,
            )
            .values(
                status=OutboxStatus.PENDING,
                claim_token=None,
                lease_until=None,
                attempts=OutboxMessage.attempts - 1,
                updated_at=utcnow(),
            )
        )
    released = result.rowcount == 1
    if released:
        logger.info(
            "E-mail %s released unsent", claim.id, extra={"outbox_id": claim.id}
        )
    return released


def message_for(claim: Claim, smtp: SmtpSettings):
    """Build the MIME message of a claimed row; the same on every attempt."""
    return build_message(
        sender=smtp.sender,
        to=[formataddr((claim.recipient_name, claim.recipient))],
        subject=claim.subject,
        text=claim.text_body,
        html=claim.html_body or None,
        message_id=make_message_id(claim.id, smtp.sender_domain or "localhost"),
        headers={"X-Provisioning-Event": claim.event},
        date=claim.created_at,
    )


def send_claimed(
    db: Database, claim: Claim, smtp: SmtpSettings, *, now: datetime | None = None
) -> str:
    """Send a claimed message and record the outcome; return the new status.

    A temporary failure schedules the next attempt with exponential backoff
    (:func:`retry_delay`) until :data:`MAX_ATTEMPTS`; a permanent one marks
    the row failed with the server's answer for the console.
    """
    try:
        message = message_for(claim, smtp)
        answer = send_message(smtp, message)
    except TemporaryMailError as error:
        if claim.attempts >= MAX_ATTEMPTS:
            return _finish(
                db,
                claim,
                OutboxStatus.FAILED,
                now=now,
                error=f"Gave up after {claim.attempts} attempts: {error}",
                answer=error.server_answer or "",
            )
        return _finish(
            db,
            claim,
            OutboxStatus.PENDING,
            now=now,
            error=str(error),
            answer=error.server_answer or "",
            retry_after=retry_delay(claim.attempts),
        )
    except MailDeliveryError as error:
        return _finish(
            db,
            claim,
            OutboxStatus.FAILED,
            now=now,
            error=str(error),
            answer=error.server_answer or "",
        )
    except ValueError as error:
        # An address or header the message cannot carry; retrying won't help.
        return _finish(db, claim, OutboxStatus.FAILED, now=now, error=str(error))

    return _finish(db, claim, OutboxStatus.SENT, now=now, answer=answer)


def _finish(
    db: Database,
    claim: Claim,
    status: str,
    *,
    now: datetime | None,
    error: str = "",
    answer: str = "",
    retry_after: timedelta | None = None,
) -> str:
    """Record the outcome of a send if the claim is still ours."""
    now = now or utcnow()
    values = {
        "status": status,
        "claim_token": None,
        "lease_until": None,
        "last_error": error,
        "smtp_answer": answer,
        "updated_at": now,
    }
    if status == OutboxStatus.SENT:
        values["sent_at"] = now
    if retry_after is not None:
        values["next_attempt_at"] = now + retry_after
    with db.write() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == claim.id,
                OutboxMessage.claim_token == claim.token,
            )
            .values(**values)
        )

    extra = {"outbox_id": claim.id, "event": claim.event, "status": status}
    if result.rowcount != 1:
        logger.warning(
            "E-mail %s (%s) to %s: %s, but its lease had expired and another "
            "worker claimed it",
            claim.id,
            claim.event,
            claim.recipient,
            status,
            extra=extra,
        )
    elif status == OutboxStatus.SENT:
        logger.info(
            "E-mail %s (%s) sent to %s: %s",
            claim.id,
            claim.event,
            claim.recipient,
            answer,
            extra=extra,
        )
    elif status == OutboxStatus.PENDING:
        logger.warning(
            "E-mail %s (%s) to %s not sent, attempt %d, retry at %s: %s",
            claim.id,
            claim.event,
            claim.recipient,
            claim.attempts,
            values["next_attempt_at"].isoformat(timespec="seconds"),
            error,
            extra=extra,
        )
    else:
        logger.error(
            "E-mail %s (%s) to %s failed: %s",
            claim.id,
            claim.event,
            claim.recipient,
            error,
            extra=extra,
        )
    return status


def deliver_pending(
    db: Database,
    settings: Settings,
    *,
    smtp: SmtpSettings | None = None,
    now: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    limit: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Send due messages one by one; return how many were handled.

    Takes the SMTP settings to use (default: the stored ones, else the
    environment's), a fixed ``now`` for tests, the lease length, an
    optional maximum number of messages, and ``should_stop``, asked before
    each claim and after it: a message claimed just as the worker is told
    to stop is released unsent for the next worker.
    """
    if smtp is None:
        try:
            with db.read() as session:
                smtp = current_smtp_settings(session, settings)
        except (MailError, ConfigurationError) as error:
            logger.error("E-mail not sent: %s", error)
            return 0

    handled = 0
    while limit is None or handled < limit:
        if should_stop is not None and should_stop():
            break
        claim = claim_next(db, now=now, lease=lease)
        if claim is None:
            break
        if should_stop is not None and should_stop():
            release(db, claim)
            break
        send_claimed(db, claim, smtp, now=now)
        handled += 1
    return handled


def resend(
    session: Session, outbox_id: str, *, actor: str, address: str | None = None
) -> OutboxMessage:
    """Put a failed message back in the queue, optionally to a corrected address.

    :raises NotFound: no such message.
    :raises ConflictError: the message is not failed (sent or still queued).
    """
    message = session.get(OutboxMessage, outbox_id)
    if message is None:
        raise NotFound(f"There is no e-mail {outbox_id!r} in the outbox.")
    if message.status != OutboxStatus.FAILED:
        raise ConflictError(
            f"E-mail {outbox_id} is {message.status}, not failed; only failed "
            "messages can be sent again."
        )
    address = (address or "").strip()
    if address:
        if "@" not in address or any(c.isspace() for c in address):
            raise ConflictError(
                f"{address!r} is not an e-mail address; enter one like "
                "name@example.org."
            )
        message.recipient = address
    message.status = OutboxStatus.PENDING
    message.attempts = 0
    message.next_attempt_at = utcnow()
    message.updated_at = utcnow()
    message.last_error = f"Resent by {actor} after: {message.last_error}"
    logger.info(
        "E-mail %s queued again by %s", outbox_id, actor, extra={"outbox_id": outbox_id}
    )
    return message


def send_waiting_now(session: Session, *, actor: str) -> int:
    """Make every message that waits for its next attempt due at once.

    For after the mail server is back or its settings were corrected, so that
    nobody waits out the backoff of messages that failed meanwhile. Messages
    being sent and failed ones are left alone (a failed one is sent again with
    :func:`resend`). The worker sends them on its next pass.

    :returns: how many messages were brought forward.
    """
    now = utcnow()
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at > now,
        )
        .values(next_attempt_at=now, updated_at=now)
    )
    count = result.rowcount
    logger.info(
        "%d waiting e-mail(s) made due by %s",
        count,
        actor,
        extra={"actor": actor, "count": count},
    )
    return count


def list_outbox(
    session: Session,
    *,
    status: str | None = None,
    instance_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OutboxMessage]:
    """Return outbox messages, newest first, optionally of one status or request."""
    query = select(OutboxMessage)
    if status:
        query = query.where(OutboxMessage.status == status)
    if instance_id is not None:
        query = query.where(OutboxMessage.instance_id == instance_id)
    query = query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def outbox_counts(session: Session) -> dict[str, int]:
    """Return the number of messages in each status."""
    counts = dict.fromkeys(OutboxStatus.ALL, 0)
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    counts.update({status: count for status, count in rows})
    return counts
