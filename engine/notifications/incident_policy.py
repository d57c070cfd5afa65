"""When a failed step is retried automatically, and when people hear of it.

A step that fails opens an incident. The worker retries it up to
:data:`INCIDENT_RETRIES` times with growing pauses, because many failures
pass (a database hiccup, a directory that was briefly down); each failure
of the same step opens a new incident that counts one attempt more. The
administrators are told at once, on the first failure, so that they can
look before the retries run out. The requester is told that the request
failed only when the retries are exhausted and the incident is left to an
administrator: telling them earlier would announce a failure for requests
that complete on the next attempt.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.models import Incident

#: Automatic retries of a failed step before it waits for an administrator.
INCIDENT_RETRIES = 3
#: Pause before the first automatic retry; each further one waits twice as long.
FIRST_INCIDENT_RETRY = timedelta(minutes=1)


def incident_retry_due(incident: Incident) -> datetime:
    """Return when an open incident is next retried automatically."""
    return incident.created_at + FIRST_INCIDENT_RETRY * 2 ** (incident.attempts - 1)


def is_first_failure(attempts: int) -> bool:
    """Tell whether an incident is the first failure of its step in a row."""
    return attempts == 1


def is_left_to_an_administrator(attempts: int) -> bool:
    """Tell whether an incident is the one where the automatic retries ran out.

    Later failures, of retries an administrator started, are not: the
    requester has already been told, and the administrator sees the outcome.
    """
    return attempts == INCIDENT_RETRIES + 1
