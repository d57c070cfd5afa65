"""The audit log and the reports, with CSV export and a chart."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Response, render_template, request
from sqlalchemy import and_, not_, or_, select

from engine.identity import ADMINISTRATOR, SYSTEM, TOKEN_ADMINISTRATOR
from engine.models import AuditEvent, Deployment, HistoryEntry, ProcessInstance
from engine.provisioning.inventory_models import Token, TokenEvent, TokenState

from ..auth import role_required
from .admin_bp import bp
from .base import actor, paginate, parse_day, reading
from .charts import bar_chart

AUDIT_LIMIT = 3000
STAFF_ACTIONS = (
    "task_completed",
    "task_saved",
    "task_claimed",
    "task_unclaimed",
    "task_assigned",
    "instance_cancelled",
    "incident_retried",
)
# The audit trail's actions, in the order the activity report shows them.
ADMIN_ACTIONS = (
    "user_created",
    "user_disabled",
    "user_enabled",
    "role_granted",
    "role_revoked",
    "password_set",
    "domain_created",
    "tokens_imported",
    "token_disabled",
    "token_unassigned",
    "token_marked_lost",
    "smtp_settings_saved",
    "smtp_settings_cleared",
    "mail_template_saved",
    "mail_template_reset",
    "api_token_created",
    "api_token_revoked",
)


@dataclass
class AuditRow:
    at: datetime
    actor: str
    action: str
    subject: str
    message: str
    link: tuple[str, dict] | None = None


def _domain_clause(column, role: str):
    scopes = actor().scopes(role) or ["\0no scope"]
    return or_(
        *(or_(column == s, column.startswith(s + "/", autoescape=True)) for s in scopes)
    )


def _audit_scope_clause():
    """Limit audit events to the administrator's domains.

    Events of settings that belong to no security domain (SMTP, e-mail
    templates) are shown to administrators of a top-level domain only, who
    administer the whole organisation.
    """
    scopes = actor().scopes(ADMINISTRATOR)
    within = _domain_clause(AuditEvent.domain_path, ADMINISTRATOR)
    if any("/" not in scope for scope in scopes):
        return or_(within, AuditEvent.domain_path.is_(None))
    return within


def _period() -> tuple[datetime, datetime]:
    """Read the report period from ?from=&to=, by default the last 30 days."""
    until = parse_day(request.args.get("to"), end=True) or datetime.now(UTC)
    since = parse_day(request.args.get("from")) or (until - timedelta(days=30))
    if since > until:
        since, until = until - timedelta(days=30), until
    return since, until


@bp.get("/audit")
@role_required(ADMINISTRATOR)
def audit():
    """Show who did what: administration, request history and deployments."""
    args = request.args
    since = parse_day(args.get("from"))
    until = parse_day(args.get("to"), end=True)
    who = args.get("actor", "").strip()
    what = args.get("action", "").strip()
    query = (
        select(HistoryEntry, ProcessInstance.process_key)
        .join(ProcessInstance, ProcessInstance.id == HistoryEntry.instance_id)
        .where(_domain_clause(ProcessInstance.domain_path, ADMINISTRATOR))
        .order_by(HistoryEntry.id.desc())
    )
    if since:
        query = query.where(HistoryEntry.at >= since)
    if until:
        query = query.where(HistoryEntry.at <= until)
    if who:
        query = query.where(HistoryEntry.actor == who)
    if what and what != "deployment":
        query = query.where(HistoryEntry.action == what)
    rows: list[AuditRow] = []
    with reading() as session:
        if what != "deployment":
            for entry, key in session.execute(query.limit(AUDIT_LIMIT)):
                rows.append(
                    AuditRow(
                        entry.at,
                        entry.actor,
                        entry.action,
                        f"{key} #{entry.instance_id}",
                        entry.message,
                        (
                            "admin.instance_detail",
                            {"instance_id": entry.instance_id},
                        ),
                    )
                )
        if what != "deployment":
            rows.extend(_audit_event_rows(session, since, until, who, what))
        if not what or what == "deployment":
            rows.extend(_deployment_rows(session, since, until, who))
        actions = sorted(
            set(session.scalars(select(HistoryEntry.action).distinct()))
            | set(session.scalars(select(AuditEvent.action).distinct()))
            | {"deployment"}
        )
    rows.sort(key=lambda r: r.at, reverse=True)
    if args.get("format") == "csv":
        return _csv(
            "audit-log.csv",
            ["at", "actor", "action", "subject", "message"],
            ([r.at.isoformat(), r.actor, r.action, r.subject, r.message] for r in rows),
        )
    return render_template("admin/audit.html", page=paginate(rows, 50), actions=actions)


def _audit_event_rows(session, since, until, who, what) -> list[AuditRow]:
    query = (
        select(AuditEvent).where(_audit_scope_clause()).order_by(AuditEvent.id.desc())
    )
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at <= until)
    if who:
        query = query.where(AuditEvent.actor == who)
    if what:
        query = query.where(AuditEvent.action == what)
    return [
        AuditRow(e.at, e.actor, e.action, e.subject, e.message, _audit_link(e))
        for e in session.scalars(query.limit(AUDIT_LIMIT))
    ]


def _audit_link(event: AuditEvent) -> tuple[str, dict] | None:
    kind, _, name = event.subject.partition(" ")
    if kind == "user":
        return ("admin.user_detail", {"username": name})
    if kind == "token":
        return ("admin.token_detail", {"serial": name})
    return None


def _deployment_rows(session, since, until, who) -> list[AuditRow]:
    query = select(Deployment).order_by(Deployment.id.desc())
    if since:
        query = query.where(Deployment.deployed_at >= since)
    if until:
        query = query.where(Deployment.deployed_at <= until)
    if who:
        query = query.where(Deployment.deployed_by == who)
    return [
        AuditRow(
            d.deployed_at,
            d.deployed_by,
            "deployment",
            f"deployment {d.id}",
            f"Deployed {d.name} from {d.source}",
            ("admin.deployment_detail", {"deployment_id": d.id}),
        )
        for d in session.scalars(query.limit(AUDIT_LIMIT))
    ]


@bp.get("/reports")
@role_required(ADMINISTRATOR, TOKEN_ADMINISTRATOR)
def reports():
    """Report tokens distributed in a period and administrator activity."""
    since, until = _period()
    with reading() as session:
        distributed = _distributed(session, since, until)
        activity = (
            _activity(session, since, until)
            if actor().has_role(ADMINISTRATOR)
            else None
        )
    report = request.args.get("report")
    if request.args.get("format") == "csv" and report == "tokens":
        return _csv(
            "tokens-distributed.csv",
            ["at", "serial", "model", "token_class", "owner", "inventory", "by"],
            (
                [
                    e.at.isoformat(),
                    t.serial,
                    t.model.code,
                    t.model.token_class,
                    t.owner or "",
                    t.domain_path,
                    e.actor,
                ]
                for e, t in distributed
            ),
        )
    if request.args.get("format") == "csv" and report == "activity" and activity:
        return _csv(
            "administrator-activity.csv",
            ["actor", "action", "count"],
            (
                [who, action, count]
                for who, counts in activity.items()
                for action, count in sorted(counts.items())
            ),
        )
    per_day = Counter(e.at.astimezone(UTC).date() for e, _ in distributed)
    days = []
    day = since.date()
    while day <= until.date():
        days.append((day.strftime("%m-%d"), per_day.get(day, 0)))
        day += timedelta(days=1)
    by_model = Counter(
        f"{t.model.code} ({t.model.token_class})" for _, t in distributed
    )
    return render_template(
        "admin/reports.html",
        since=since,
        until=until,
        distributed=distributed,
        by_model=sorted(by_model.items()),
        chart=bar_chart(
            days,
            title=f"Tokens distributed per day, {since:%Y-%m-%d} to {until:%Y-%m-%d}",
        ),
        activity=activity,
        activity_actions=_activity_columns(activity or {}),
    )


def _distributed(session, since, until) -> list[tuple[TokenEvent, Token]]:
    """Return each hand-over of a token from stock to a user in the period."""
    query = (
        select(TokenEvent, Token)
        .join(Token, Token.id == TokenEvent.token_id)
        .where(
            and_(
                TokenEvent.from_state == TokenState.AVAILABLE,
                TokenEvent.to_state == TokenState.ASSIGNED,
                TokenEvent.at >= since,
                TokenEvent.at <= until,
            )
        )
        .where(
            or_(
                _domain_clause(Token.domain_path, ADMINISTRATOR),
                _domain_clause(Token.domain_path, TOKEN_ADMINISTRATOR),
            )
        )
        .order_by(TokenEvent.at)
    )
    return [(e, t) for e, t in session.execute(query)]


def _activity(session, since, until) -> dict[str, dict[str, int]]:
    """Count what each member of staff did in the period, by kind of action.

    A requester cancelling their own request, or managing their own API
    tokens, is self-service and not counted.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    query = (
        select(HistoryEntry.actor, HistoryEntry.action)
        .join(ProcessInstance, ProcessInstance.id == HistoryEntry.instance_id)
        .where(_domain_clause(ProcessInstance.domain_path, ADMINISTRATOR))
        .where(HistoryEntry.action.in_(STAFF_ACTIONS))
        .where(HistoryEntry.at >= since, HistoryEntry.at <= until)
        .where(HistoryEntry.actor != SYSTEM)
        .where(
            not_(
                and_(
                    HistoryEntry.action == "instance_cancelled",
                    HistoryEntry.actor == ProcessInstance.initiator,
                )
            )
        )
    )
    for who, action in session.execute(query):
        counts[who][action] += 1
    events = (
        select(AuditEvent.actor, AuditEvent.action, AuditEvent.data)
        .where(_audit_scope_clause())
        .where(AuditEvent.action.in_(ADMIN_ACTIONS))
        .where(AuditEvent.at >= since, AuditEvent.at <= until)
        .where(AuditEvent.actor != SYSTEM)
    )
    for who, action, data in session.execute(events):
        if action.startswith("api_token_") and (data or {}).get("owner") == who:
            continue
        counts[who][action] += 1
    for who in session.scalars(
        select(Deployment.deployed_by).where(
            Deployment.deployed_at >= since, Deployment.deployed_at <= until
        )
    ):
        counts[who]["deployment"] += 1
    return {who: dict(c) for who, c in sorted(counts.items())}


def _activity_columns(activity: dict[str, dict[str, int]]) -> tuple[str, ...]:
    """Return the request actions, then the kinds of administration that occur."""
    done = {action for counts in activity.values() for action in counts}
    return (
        STAFF_ACTIONS
        + ("deployment",)
        + tuple(action for action in ADMIN_ACTIONS if action in done)
    )


def _csv(filename: str, header: list[str], rows) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
