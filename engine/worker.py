"""The background worker: fires due timers and runs registered periodic jobs.

One loop, one item at a time, each in its own transaction, so that a worker
stopped at any moment loses nothing: an item is either done and committed or
untouched. SIGTERM and SIGINT stop the loop after the current item.

Other parts of the product add their jobs with :func:`register_job` (the
e-mail outbox does); each job is called with the database and returns how many
items it handled.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import OperationalError

from . import instances
from .config import Settings
from .db import Database
from .errors import ProvisioningError

logger = logging.getLogger(__name__)

Job = Callable[[Database, Settings], int]
_jobs: dict[str, Job] = {}
# The stop event of the Worker running in this thread, so that a job working
# through many items can stop after the current one (see stop_requested).
_stopping: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "worker_stopping", default=None
)


def stop_requested() -> bool:
    """Tell whether the worker running the current job has been asked to stop."""
    stopping = _stopping.get()
    return stopping is not None and stopping.is_set()


def register_job(name: str, job: Job) -> None:
    """Run ``job(database, settings)`` on every pass of the worker loop."""
    _jobs[name] = job


def fire_due_timers(
    db: Database, settings: Settings, now: datetime | None = None
) -> int:
    """Fire every timer that is due; return how many fired."""
    with db.read() as session:
        due = [t.id for t in instances.due_timers(session, now)]
    fired = 0
    for timer_id in due:
        if stop_requested():
            break
        try:
            with db.write() as session:
                if instances.fire_timer(session, timer_id, settings=settings):
                    fired += 1
                    logger.info(
                        "Fired timer %s", timer_id, extra={"timer_id": timer_id}
                    )
        except ProvisioningError as err:
            logger.warning("Timer %s not fired: %s", timer_id, err)
    return fired


def run_once(db: Database, settings: Settings) -> int:
    """Do one pass: timers, then every registered job; return items handled."""
    handled = fire_due_timers(db, settings)
    for name, job in list(_jobs.items()):
        try:
            handled += job(db, settings)
        except OperationalError as err:
            logger.warning("Job %s hit a database error, will retry: %s", name, err)
    return handled


class Worker:
    def __init__(self, db: Database, settings: Settings, *, interval: float = 2.0):
        self.db = db
        self.settings = settings
        self.interval = interval
        self._stop = threading.Event()

    def stop(self, *_args) -> None:
        if not self._stop.is_set():
            logger.info("Worker stopping after the current item")
        self._stop.set()

    def run(
        self, *, install_signal_handlers: bool = True, max_passes: int | None = None
    ):
        """Loop until stopped, sleeping ``interval`` seconds when idle."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        logger.info("Worker started", extra={"jobs": sorted(_jobs)})
        token = _stopping.set(self._stop)
        passes = 0
        while not self._stop.is_set():
            try:
                handled = run_once(self.db, self.settings)
            except OperationalError as err:
                logger.warning("Database unavailable, retrying: %s", err)
                handled = 0
            passes += 1
            if max_passes is not None and passes >= max_passes:
                break
            if not handled:
                self._stop.wait(self.interval)
        _stopping.reset(token)
        logger.info("Worker stopped")
