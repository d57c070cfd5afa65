"""In-transaction listeners for what happens to process instances.

Every history entry the engine writes is also offered to the listeners
registered here, inside the same transaction. Notifications use this to write
their outbox rows atomically with the state change that causes them: if the
step rolls back, so does the mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .models import HistoryEntry, HumanTask, ProcessInstance

logger = logging.getLogger(__name__)

Listener = Callable[
    ["Session", "ProcessInstance", "HistoryEntry", "HumanTask | None"], None
]

_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Listener:
    """Call ``listener(session, instance, entry, task)`` for each history entry."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def emit(session, instance, entry, task=None) -> None:
    for listener in list(_listeners):
        listener(session, instance, entry, task)
