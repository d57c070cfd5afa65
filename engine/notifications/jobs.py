"""The worker job that delivers the outbox."""

from __future__ import annotations

from engine.config import Settings
from engine.db import Database
from engine.worker import register_job, stop_requested

from .listener import configure
from .outbox import deliver_pending


def deliver_outbox(db: Database, settings: Settings) -> int:
    """Send every due message; stop early when the worker is told to stop."""
    configure(settings)
    return deliver_pending(db, settings, should_stop=stop_requested)


register_job("mail_outbox", deliver_outbox)
