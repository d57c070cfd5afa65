"""Administrators' versions of the e-mail templates, per event and request type.

For an event and a request type, each part (subject, text, HTML) comes from
the first of: the override for that request type, the override for all
request types (``request_type == ""``), the default of
:mod:`engine.mail_templates`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import NotFound, ValidationFailed
from engine.mail import (
    DEFAULT_TEMPLATES,
    EVENTS,
    TEMPLATE_KINDS,
    RenderedMail,
    render_template,
    sample_context,
    validate_template,
)
from engine.models import utcnow

from .models import MailTemplateOverride

logger = logging.getLogger(__name__)


def template_overrides(
    session: Session, event: str, request_type: str = ""
) -> dict[str, str]:
    """Return the override sources for ``event`` that apply to ``request_type``."""
    rows = {
        row.request_type: row
        for row in session.scalars(
            select(MailTemplateOverride).where(
                MailTemplateOverride.event == event,
                MailTemplateOverride.request_type.in_({"", request_type}),
            )
        )
    }
    sources: dict[str, str] = {}
    for key in ("", request_type) if request_type else ("",):
        row = rows.get(key)
        if row is None:
            continue
        for kind in TEMPLATE_KINDS:
            value = getattr(row, kind)
            if value is not None:
                sources[kind] = value
    return sources


def list_template_overrides(session: Session) -> list[MailTemplateOverride]:
    """Return every stored override, by event and request type."""
    return list(
        session.scalars(
            select(MailTemplateOverride).order_by(
                MailTemplateOverride.event, MailTemplateOverride.request_type
            )
        )
    )


def effective_sources(
    session: Session, event: str, request_type: str = ""
) -> dict[str, str]:
    """Return the sources in force for each part: overrides, else defaults."""
    _check_event(event)
    default = DEFAULT_TEMPLATES[event]
    sources = {kind: getattr(default, kind) for kind in TEMPLATE_KINDS}
    sources.update(template_overrides(session, event, request_type))
    return sources


def save_template_override(
    session: Session,
    *,
    event: str,
    request_type: str = "",
    sources: Mapping[str, str | None],
    actor: str,
) -> MailTemplateOverride:
    """Store an administrator's template parts for ``event`` and ``request_type``.

    ``sources`` maps "subject", "text" and "html" to Jinja2 source; a part
    that is None or equal to the default keeps the default. Each part is
    checked with :func:`engine.mail.validate_template` first.

    :raises ValidationFailed: one message per part with problems, listing
        each problem with its line.
    :raises NotFound: the event is unknown.
    """
    _check_event(event)
    default = DEFAULT_TEMPLATES[event]
    errors: dict[str, str] = {}
    cleaned: dict[str, str | None] = {}
    for kind in TEMPLATE_KINDS:
        source = sources.get(kind)
        if source is not None:
            source = source.replace("\r\n", "\n")
        if source is None or source == getattr(default, kind):
            cleaned[kind] = None
            continue
        problems = validate_template(source, kind)
        if problems:
            errors[kind] = " ".join(problems)
        cleaned[kind] = source
    if errors:
        raise ValidationFailed(
            f"The {event!r} template was not saved: "
            + "; ".join(f"{kind}: {text}" for kind, text in errors.items()),
            errors,
        )

    row = session.scalars(
        select(MailTemplateOverride).where(
            MailTemplateOverride.event == event,
            MailTemplateOverride.request_type == request_type,
        )
    ).first()
    if row is None:
        row = MailTemplateOverride(event=event, request_type=request_type)
        session.add(row)
    row.subject = cleaned["subject"]
    row.text = cleaned["text"]
    row.html = cleaned["html"]
    row.updated_at = utcnow()
    row.updated_by = actor
    changed = [kind for kind in TEMPLATE_KINDS if cleaned[kind] is not None]
    audit.record(
        session,
        actor=actor,
        action="mail_template_saved",
        subject=f"e-mail template {event}",
        message=(
            f"Saved the {event} template for "
            f"{request_type or 'all request types'} "
            f"(changed: {', '.join(changed) or 'nothing, the defaults apply'})"
        ),
        data={"event": event, "request_type": request_type},
    )
    return row


def delete_template_override(
    session: Session, *, event: str, request_type: str = "", actor: str
) -> bool:
    """Return ``event``'s template for ``request_type`` to the default."""
    row = session.scalars(
        select(MailTemplateOverride).where(
            MailTemplateOverride.event == event,
            MailTemplateOverride.request_type == request_type,
        )
    ).first()
    if row is None:
        return False
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="mail_template_reset",
        subject=f"e-mail template {event}",
        message=(
            f"Reset the {event} template for "
            f"{request_type or 'all request types'} to the default"
        ),
        data={"event": event, "request_type": request_type},
    )
    return True


def preview_template(
    event: str,
    sources: Mapping[str, str],
    context: Mapping[str, Any] | None = None,
) -> RenderedMail:
    """Render ``sources`` for ``event`` on the sample request (or ``context``).

    :raises MailTemplateError: a part fails to render; the message names it.
    """
    _check_event(event)
    return render_template(event, context or sample_context(), dict(sources))


def _check_event(event: str) -> None:
    """Raise NotFound unless ``event`` is one of the e-mail events."""
    if event not in EVENTS:
        raise NotFound(
            f"There is no e-mail event {event!r}; the events are {', '.join(EVENTS)}."
        )
