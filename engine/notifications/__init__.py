"""E-mail notifications: who is told what, the outbox, and its delivery.

Importing this package (done by :mod:`engine.product`) registers the
listener that turns engine history into outbox rows in the same
transaction (:mod:`.listener`) and the worker job that delivers them
(:mod:`.jobs`). The pieces:

- :mod:`.models`: the outbox, template overrides, stored SMTP settings;
- :mod:`.recipients`: requester, candidates of a task, administrators;
- :mod:`.context`: the template variables of one request;
- :mod:`.outbox`: enqueue, claim with a lease, send, retry, resend;
- :mod:`.templates`: administrators' templates per event and request type;
- :mod:`.smtp`: SMTP settings stored by an administrator;
- :mod:`.cli`: the ``provisioning mail`` commands.
"""

from . import jobs, listener, models  # noqa: F401 - registration on import
from .listener import configure
from .models import MailTemplateOverride, OutboxMessage, OutboxStatus
from .outbox import (
    claim_next,
    deliver_pending,
    list_outbox,
    outbox_counts,
    release,
    resend,
    send_claimed,
)

__all__ = [
    "MailTemplateOverride",
    "OutboxMessage",
    "OutboxStatus",
    "claim_next",
    "configure",
    "deliver_pending",
    "list_outbox",
    "outbox_counts",
    "release",
    "resend",
    "send_claimed",
]
