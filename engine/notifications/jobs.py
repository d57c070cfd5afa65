"""The worker's jobs for this package: deliver the outbox, retry incidents.

Retrying incidents lives here because it is the other half of telling people
about failures: a step that failed for a passing reason (a database hiccup, a
directory that was briefly down) is run again a few times with growing pauses
before anyone has to act (see :mod:`.incident_policy` for who is told when).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from engine.config import Settings
from engine.db import Database
from engine.errors import ProvisioningError
from engine.identity import SYSTEM_ACTOR
from engine.instances import lock_instance, retry_incident
from engine.models import Incident, IncidentStatus, InstanceStatus, utcnow
from engine.worker import register_job, stop_requested

from .incident_policy import INCIDENT_RETRIES, incident_retry_due
from .listener import configure
from .outbox import deliver_pending

logger = logging.getLogger(__name__)


def deliver_outbox(db: Database, settings: Settings) -> int:
    """Send every due message; stop early when the worker is told to stop."""
    configure(settings)
    return deliver_pending(db, settings, should_stop=stop_requested)


def retry_incidents(
    db: Database, settings: Settings, *, now: datetime | None = None
) -> int:
    """Retry open incidents whose pause has passed; return how many were retried.

    An incident whose step has failed :data:`INCIDENT_RETRIES` + 1 times is
    left for an administrator, who sees it in the console and got the
    incident mail; the requester is told then that the request failed.
    """
    now = now or utcnow()
    with db.read() as session:
        candidates = [
            (incident.id, incident.instance_id)
            for incident in session.scalars(
                select(Incident)
                .where(
                    Incident.status == IncidentStatus.OPEN,
                    Incident.attempts < INCIDENT_RETRIES + 1,
                )
                .order_by(Incident.created_at)
                .limit(100)
            )
            if incident_retry_due(incident) <= now
        ]

    retried = 0
    for incident_id, instance_id in candidates:
        if stop_requested():
            break
        try:
            with db.write() as session:
                instance = lock_instance(session, instance_id)
                incident = session.get(Incident, incident_id)
                # Another worker or an administrator may have acted meanwhile.
                if (
                    incident is None
                    or incident.status != IncidentStatus.OPEN
                    or instance.status != InstanceStatus.INCIDENT
                ):
                    continue
                retry_incident(
                    session, instance_id, actor=SYSTEM_ACTOR, settings=settings
                )
                outcome = instance.status
        except ProvisioningError as error:
            logger.warning("Incident %s not retried: %s", incident_id, error)
            continue
        retried += 1
        logger.info(
            "Retried incident %s of instance %s: now %s",
            incident_id,
            instance_id,
            outcome,
            extra={"instance_id": instance_id, "incident_id": incident_id},
        )
    return retried


register_job("mail_outbox", deliver_outbox)
register_job("incident_retries", retry_incidents)
