"""Turn what happens to process instances into outbox rows, in the same transaction.

The engine offers every history entry to :func:`record` while a step runs.
One step often writes several entries whose meaning only shows together: an
approval followed by a distribution task means "approved, now waiting for
distribution"; an approval followed by the end of the process means
"completed". So entries are collected on the session and turned into mail in
``before_commit``, when the step is whole, and the outbox rows commit with
it. A rolled-back step drops its entries and sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from engine import events
from engine.config import Settings
from engine.identity import TOKEN_DISTRIBUTOR
from engine.mail import MailTemplateError, RenderedMail, render_template
from engine.models import (
    HistoryEntry,
    HumanTask,
    Incident,
    ProcessInstance,
    TaskStatus,
)

from .context import request_data, template_context
from .incident_policy import is_first_failure, is_left_to_an_administrator
from .models import OutboxStatus
from .outbox import enqueue
from .recipients import Recipient, administrators, requester, task_candidates
from .templates import template_overrides

logger = logging.getLogger(__name__)

_PENDING_KEY = "notifications.entries"
_settings: Settings | None = None

#: History actions that may cause mail; steps with none of them are skipped.
_MAIL_ACTIONS = frozenset(
    {
        "instance_started",
        "task_created",
        "task_completed",
        "instance_completed",
        "instance_cancelled",
        "incident_opened",
        "timer_fired",
    }
)
#: Boundary timers whose firing is announced, by BPMN id.
REMINDER_TIMERS = frozenset({"approval_reminder"})
ESCALATION_TIMERS = frozenset({"approval_escalation"})


def configure(settings: Settings) -> None:
    """Use ``settings`` (base URL, site name) for the mails written from now on."""
    global _settings
    _settings = settings


def _current_settings() -> Settings:
    """Return the configured settings, reading the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def record(
    session: Session,
    instance: ProcessInstance,
    entry: HistoryEntry,
    task: HumanTask | None,
) -> None:
    """Remember a history entry until the transaction commits."""
    session.info.setdefault(_PENDING_KEY, []).append((instance, entry, task))


@event.listens_for(Session, "before_commit")
def _write_notifications(session: Session) -> None:
    # A service handler's savepoint commits too; only the real commit counts.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING_KEY, None)
    if pending:
        write_notifications(session, pending, _current_settings())


@event.listens_for(Session, "after_rollback")
def _forget_notifications(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING_KEY, None)


@dataclass
class _Mail:
    event: str
    recipient: Recipient
    task: HumanTask | None = None
    approver: str | None = None
    comment: str | None = None
    for_staff: bool = False


@dataclass
class _Step:
    instance: ProcessInstance
    entries: list[tuple[HistoryEntry, HumanTask | None]] = field(default_factory=list)

    def of(self, action: str) -> list[tuple[HistoryEntry, HumanTask | None]]:
        return [(e, t) for e, t in self.entries if e.action == action]


def write_notifications(
    session: Session,
    pending: list[tuple[ProcessInstance, HistoryEntry, HumanTask | None]],
    settings: Settings,
) -> int:
    """Write the outbox rows for the entries of one transaction; return how many."""
    steps: dict[int, _Step] = {}
    for instance, entry, task in pending:
        steps.setdefault(instance.id, _Step(instance)).entries.append((entry, task))

    written = 0
    for step in steps.values():
        if not any(entry.action in _MAIL_ACTIONS for entry, _ in step.entries):
            continue
        mails = _mails_of_step(session, step)
        if not mails:
            continue
        completed = step.of("instance_completed")
        data = request_data(session, step.instance, with_workflow=bool(completed))
        seen: set[tuple[str, str]] = set()
        for mail in mails:
            key = (mail.event, mail.recipient.address.lower())
            if key in seen:
                continue
            seen.add(key)
            _write(session, step.instance, mail, data, settings)
            written += 1
    return written


def _mails_of_step(session: Session, step: _Step) -> list[_Mail]:
    """Decide which mails one step of one instance causes, and to whom."""
    instance = step.instance
    mails: list[_Mail] = []
    user = requester(session, instance)

    def to_requester(event_name: str, **values: Any) -> None:
        if user is not None:
            mails.append(_Mail(event_name, user, **values))

    if step.of("instance_started"):
        to_requester("submitted")

    decisions = [
        (entry, task)
        for entry, task in step.of("task_completed")
        if "decision" in (entry.data or {})
    ]
    last_decision = decisions[-1][0] if decisions else None

    completed = step.of("instance_completed")
    cancelled = step.of("instance_cancelled")
    if completed:
        end = completed[-1][0].element_id or ""
        actor, comment = _decision_of(session, instance, last_decision)
        if end == "request_rejected":
            to_requester("rejected", approver=actor, comment=comment)
        elif end == "request_cancelled":
            to_requester("cancelled", approver=actor, comment=comment)
        elif end == "request_expired":
            to_requester("expired")
        else:
            to_requester("completed", comment=comment)
    elif cancelled:
        entry = cancelled[-1][0]
        by_someone_else = entry.actor != instance.initiator
        to_requester(
            "cancelled",
            approver=entry.actor if by_someone_else else None,
            comment=(entry.data or {}).get("reason"),
        )

    created = [
        task
        for _, task in step.of("task_created")
        if task is not None and task.status == TaskStatus.OPEN
    ]
    approved = last_decision is not None and last_decision.data["decision"] == "approve"
    if approved and not completed and any(_is_distribution(t) for t in created):
        actor, comment = _decision_of(session, instance, last_decision)
        to_requester("approved", approver=actor, comment=comment)
    for task in created:
        event_name = (
            "distribution_needed" if _is_distribution(task) else "approval_needed"
        )
        mails.extend(
            _Mail(event_name, person, task=task, for_staff=True)
            for person in task_candidates(session, task, instance)
        )

    for entry, _ in step.of("timer_fired"):
        open_tasks = _open_tasks(session, instance)
        if entry.element_id in REMINDER_TIMERS:
            for task in open_tasks:
                mails.extend(
                    _Mail("reminder", person, task=task, for_staff=True)
                    for person in task_candidates(session, task, instance)
                )
        elif entry.element_id in ESCALATION_TIMERS:
            task = open_tasks[0] if open_tasks else None
            mails.extend(
                _Mail("escalation", person, task=task, for_staff=True)
                for person in administrators(session, instance)
            )

    for entry, _ in step.of("incident_opened"):
        # The worker retries a failed step a few times before it waits for an
        # administrator: administrators hear of the first failure, so they can
        # look at once; the requester hears only of the one left to them, as
        # the request may still complete on a retry.
        attempts = _incident_attempts(session, instance, entry.element_id)
        if is_first_failure(attempts):
            mails.extend(
                _Mail("incident", person, comment=entry.message, for_staff=True)
                for person in administrators(session, instance)
            )
        if is_left_to_an_administrator(attempts):
            to_requester("failed")
    return mails


def _decision_of(
    session: Session, instance: ProcessInstance, entry: HistoryEntry | None
) -> tuple[str | None, str | None]:
    """Return who took the latest decision on the request and their comment.

    Looks in the history when the decision was taken in an earlier step.
    """
    if entry is None:
        entry = session.scalars(
            select(HistoryEntry)
            .where(
                HistoryEntry.instance_id == instance.id,
                HistoryEntry.action == "task_completed",
            )
            .order_by(HistoryEntry.id.desc())
        ).first()
    if entry is None:
        return None, None
    return entry.actor, (entry.data or {}).get("comment") or None


def _incident_attempts(
    session: Session, instance: ProcessInstance, element_id: str | None
) -> int:
    """Return how often the step of the latest incident has failed in a row."""
    attempts = session.scalar(
        select(Incident.attempts)
        .where(Incident.instance_id == instance.id, Incident.element_id == element_id)
        .order_by(Incident.id.desc())
        .limit(1)
    )
    return attempts or 1


def _is_distribution(task: HumanTask) -> bool:
    """Tell whether a task hands out a token rather than approving a request."""
    return TOKEN_DISTRIBUTOR in task.candidate_groups or task.task_spec.startswith(
        "distribute"
    )


def _open_tasks(session: Session, instance: ProcessInstance) -> list[HumanTask]:
    """Return the instance's open tasks, oldest first."""
    return list(
        session.scalars(
            select(HumanTask)
            .where(
                HumanTask.instance_id == instance.id,
                HumanTask.status == TaskStatus.OPEN,
            )
            .order_by(HumanTask.created_at)
        )
    )


def _write(
    session: Session,
    instance: ProcessInstance,
    mail: _Mail,
    data: dict[str, Any],
    settings: Settings,
) -> None:
    """Render one mail and add it to the outbox."""
    context = template_context(
        session,
        instance,
        settings,
        data=data,
        task=mail.task,
        approver=mail.approver,
        comment=mail.comment,
        for_staff=mail.for_staff,
    )
    business_key = context["request"]["business_key"]
    try:
        rendered = _render(session, mail.event, instance.process_key, context)
    except (MailTemplateError, ValueError) as error:
        # The step itself succeeded and must commit; the mail becomes a
        # failed outbox row that the console shows, rather than lost.
        logger.error(
            "E-mail %s for %s not rendered: %s", mail.event, business_key, error
        )
        message = enqueue(
            session,
            event=mail.event,
            recipient=mail.recipient,
            rendered=RenderedMail(f"({mail.event} e-mail not rendered)", "", ""),
            instance=instance,
            business_key=business_key,
        )
        message.status = OutboxStatus.FAILED
        message.last_error = f"The e-mail could not be rendered: {error}"
        return
    enqueue(
        session,
        event=mail.event,
        recipient=mail.recipient,
        rendered=rendered,
        instance=instance,
        business_key=business_key,
    )


def _render(
    session: Session, event_name: str, request_type: str, context: dict[str, Any]
) -> RenderedMail:
    """Render with the administrator's templates, falling back to the defaults.

    A broken custom template must not stop the request it reports on, so
    its error is logged and the default text goes out instead.
    """
    overrides = template_overrides(session, event_name, request_type)
    try:
        return render_template(event_name, context, overrides)
    except MailTemplateError as error:
        if not overrides:
            raise
        logger.error("%s The default template was used instead.", error)
        return render_template(event_name, context)


events.subscribe(record)

__all__ = ["configure", "record", "write_notifications"]
