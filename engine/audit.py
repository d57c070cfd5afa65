"""The audit trail: who changed what in the administration, and when.

Process instances keep their own history (:class:`engine.models.HistoryEntry`)
and deployments say who deployed them; everything else an administrator or a
token administrator changes (users, roles, security domains, passwords, the
token inventory, e-mail settings and templates, API tokens) leaves one
:class:`engine.models.AuditEvent`. The row is written in the caller's
transaction, so it is stored exactly when the change is.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from .models import AuditEvent

logger = logging.getLogger(__name__)


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    message: str,
    domain_path: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session and log it.

    :param actor: the username of whoever made the change ("system" for the
        operator at the command line and for service tasks).
    :param action: what kind of change, e.g. "role_granted".
    :param subject: what it was made to, e.g. "user jdoe" or "smtp settings".
    :param message: what changed, in a sentence; never a password or secret.
    :param domain_path: the security domain the subject belongs to, None for
        settings of the whole installation.
    :param data: optional details for machines, equally free of secrets.
    :returns: the new event, flushed so that it has an id.
    """
    event = AuditEvent(
        actor=actor,
        action=action,
        subject=subject,
        domain_path=domain_path,
        message=message,
        data=data,
    )
    session.add(event)
    session.flush()
    logger.info(
        "%s: %s",
        subject,
        message,
        extra={
            "audit_event_id": event.id,
            "actor": actor,
            "action": action,
            "domain": domain_path,
        },
    )

    return event
