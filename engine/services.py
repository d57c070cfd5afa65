"""Handlers that service tasks call, registered by topic.

A diagram's ``<serviceTask camunda:type="external" camunda:topic="T">`` calls
the handler registered for ``T`` with a :class:`ServiceCall`. The handler runs
inside the transaction that advances the instance, so whatever it writes to
the database commits or rolls back together with the instance's state. A
handler raises :class:`engine.errors.ServiceError` (or any exception) to fail;
the instance then stops at that task with an incident that can be retried.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ServiceError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .config import Settings
    from .models import ProcessInstance

logger = logging.getLogger(__name__)


@dataclass
class ServiceCall:
    """What a handler gets: the task's data to read and update, and its context."""

    topic: str
    element_id: str
    data: dict[str, Any]
    session: Session
    instance: ProcessInstance
    settings: Settings
    actor: str


Handler = Callable[[ServiceCall], None]

_handlers: dict[str, Handler] = {}
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "service_context", default=None
)


def register(topic: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``topic``."""

    def decorator(func: Handler) -> Handler:
        _handlers[topic] = func
        return func

    return decorator


def unregister(topic: str) -> None:
    _handlers.pop(topic, None)


def topics() -> set[str]:
    return set(_handlers)


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Make the session, instance, settings and actor available to handlers."""
    token = _context.set(context)
    try:
        yield
    finally:
        _context.reset(token)


def call(topic: str, task) -> None:
    """Run the handler of ``topic`` for a SpiffWorkflow task."""
    handler = _handlers.get(topic)
    element_id = task.task_spec.bpmn_id
    if handler is None:
        known = ", ".join(sorted(_handlers)) or "none"
        raise ServiceError(
            f"No handler is registered for service topic '{topic}' (element "
            f"'{element_id}'). Registered topics: {known}."
        )
    context = _context.get()
    if context is None:
        raise ServiceError(
            f"Service task '{element_id}' ran outside the engine; service tasks "
            "only run through engine.instances."
        )
    # A savepoint, so that a handler that fails half-way leaves no writes behind
    # while the instance's own state up to this task is still kept.
    with context["session"].begin_nested():
        handler(
            ServiceCall(topic=topic, element_id=element_id, data=task.data, **context)
        )
    logger.info(
        "Ran service task %s (%s) of instance %s",
        element_id,
        topic,
        context["instance"].id,
        extra={"instance_id": context["instance"].id, "topic": topic},
    )
