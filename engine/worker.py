"""The background worker: fires due timers and runs registered periodic jobs.

One loop, one item at a time, each in its own transaction, so that a worker
stopped at any moment loses nothing: an item is either done and committed or
untouched. SIGTERM and SIGINT stop the loop after the current item.

One bad item must not stop the worker or hold up the others: an item whose
transaction raises is rolled back, logged with its traceback and put off for
a growing pause (see :class:`Backoff`), and the loop goes on with the next.
Only a database that cannot be reached pauses the whole pass.

Other parts of the product add their jobs with :func:`register_job` (the
e-mail outbox does); each job is called with the database and returns how many
items it handled.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from . import instances
from .config import Settings
from .db import Database
from .errors import ProvisioningError

logger = logging.getLogger(__name__)

Job = Callable[[Database, Settings], int]
T = TypeVar("T")
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


class Backoff:
    """Items that failed, and when each may be tried again.

    Each failure in a row doubles the pause, from ``first`` up to ``longest``
    seconds, so an item that fails every time (a bug, unreadable stored data)
    neither occupies the worker on every pass nor crowds other items out of a
    batch. Kept in memory: a restarted worker tries each item once more.
    """

    def __init__(
        self,
        first: float = 30.0,
        longest: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.first = first
        self.longest = longest
        self._clock = clock
        self._failures: dict[tuple[str, Hashable], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def failed(self, kind: str, item: Hashable) -> float:
        """Record a failure of ``item``; return the pause before its next try."""
        with self._lock:
            count = self._failures.get((kind, item), (0, 0.0))[0] + 1
            pause = min(self.first * 2 ** (count - 1), self.longest)
            self._failures[(kind, item)] = (count, self._clock() + pause)
        return pause

    def succeeded(self, kind: str, item: Hashable) -> None:
        """Forget the failures of ``item``."""
        with self._lock:
            self._failures.pop((kind, item), None)

    def put_off(self, kind: str) -> set[Hashable]:
        """Return the items of ``kind`` whose pause has not ended yet."""
        now = self._clock()
        with self._lock:
            return {
                item
                for (k, item), (_count, retry_at) in self._failures.items()
                if k == kind and retry_at > now
            }


#: The failures of this process's worker; jobs consult it through
#: :func:`run_item` and :meth:`Backoff.put_off`.
backoff = Backoff()


def run_item(kind: str, item: Hashable, action: Callable[[], T]) -> T | None:
    """Run one item's transaction; on failure log it, put it off, return None.

    ``action`` opens and commits its own transaction, so a failure has already
    rolled the item back when it reaches here. A database that cannot be
    reached is not the item's fault: :class:`OperationalError` is raised on,
    for the loop to wait.
    """
    if item in backoff.put_off(kind):
        return None
    extra = {"item_kind": kind, "item_id": str(item)}
    try:
        result = action()
    except OperationalError:
        raise
    except ProvisioningError as err:
        pause = backoff.failed(kind, item)
        logger.warning(
            "%s %s not handled, next try in %.0f s: %s",
            kind,
            item,
            pause,
            err,
            extra=extra,
        )
        return None
    except Exception:  # noqa: BLE001 - one bad item must not stop the worker
        pause = backoff.failed(kind, item)
        logger.error(
            "%s %s failed and was rolled back; next try in %.0f s",
            kind,
            item,
            pause,
            exc_info=True,
            extra=extra,
        )
        return None
    backoff.succeeded(kind, item)
    return result


def fire_due_timers(
    db: Database, settings: Settings, now: datetime | None = None
) -> int:
    """Fire every timer that is due; return how many fired."""
    with db.read() as session:
        due = [
            t.id
            for t in instances.due_timers(
                session, now, exclude=backoff.put_off("Timer")
            )
        ]
    fired = 0
    for timer_id in due:
        if stop_requested():
            break
        if run_item("Timer", timer_id, lambda t=timer_id: _fire(db, settings, t)):
            fired += 1
            logger.info("Fired timer %s", timer_id, extra={"timer_id": timer_id})
    return fired


def _fire(db: Database, settings: Settings, timer_id: int) -> bool:
    with db.write() as session:
        return instances.fire_timer(session, timer_id, settings=settings)


def run_once(db: Database, settings: Settings) -> int:
    """Do one pass: timers, then every registered job; return items handled."""
    handled = 0
    jobs = [("timers", fire_due_timers), *_jobs.items()]
    for name, job in jobs:
        try:
            handled += run_item("Job", name, lambda j=job: j(db, settings)) or 0
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
            except Exception:  # noqa: BLE001 - the loop outlives any one pass
                logger.error("Worker pass failed; trying again", exc_info=True)
                handled = 0
            passes += 1
            if max_passes is not None and passes >= max_passes:
                break
            if not handled:
                self._stop.wait(self.interval)
        _stopping.reset(token)
        logger.info("Worker stopped")
