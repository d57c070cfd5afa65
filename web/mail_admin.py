"""Administration pages for e-mail: SMTP settings, templates, the outbox.

Administrators only: every view checks the signed-in user (403 otherwise),
and every form carries a CSRF token (Flask-WTF).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, NumberRange, Optional, Regexp

from engine.errors import ConfigurationError, ProvisioningError, ValidationFailed
from engine.mail import (
    EVENTS,
    TEMPLATE_FILTERS,
    TEMPLATE_KINDS,
    TEMPLATE_VARIABLES,
    MailDeliveryError,
    MailError,
    test_connection,
)
from engine.notifications import configure
from engine.notifications.models import OutboxStatus
from engine.notifications.outbox import (
    list_outbox,
    outbox_counts,
    resend,
    send_waiting_now,
)
from engine.notifications.smtp import (
    clear_smtp_settings,
    current_smtp_settings,
    describe_smtp_settings,
    save_smtp_settings,
    smtp_settings_from_form,
)
from engine.notifications.templates import (
    delete_template_override,
    effective_sources,
    list_template_overrides,
    preview_template,
    save_template_override,
    template_overrides,
)
from engine.provisioning.requests import REQUEST_TYPES

from .console.base import Page, page_number

bp = Blueprint("mail_admin", __name__, url_prefix="/admin/mail")

OUTBOX_PAGE_SIZE = 50

# Enough to catch typing mistakes; the SMTP server has the final word.
_ADDRESS = r"^[^@\s]+@[^@\s]+$"

EVENT_LABELS = {
    "submitted": "Request submitted (to the requester)",
    "approval_needed": "Waiting for approval (to the approvers)",
    "distribution_needed": "Waiting for distribution (to the distributors)",
    "approved": "Approved (to the requester)",
    "rejected": "Rejected (to the requester)",
    "cancelled": "Cancelled (to the requester)",
    "completed": "Completed, with delivery details (to the requester)",
    "failed": "Failed (to the requester)",
    "reminder": "Reminder (to the approvers)",
    "escalation": "Escalation (to the domain's administrators)",
    "expired": "Expired without a decision (to the requester)",
    "incident": "Incident (to the domain's administrators)",
}


def init_app(app: Flask) -> None:
    """Register the e-mail pages and give the listener the app's settings."""
    configure(app.extensions["settings"])
    app.register_blueprint(bp)
    app.context_processor(_admin_links)


def _admin_links() -> dict[str, Any]:
    """Add the e-mail pages to the administration menu of base.html."""
    if not (current_user and getattr(current_user, "is_authenticated", False)):
        return {}
    if not current_user.is_admin:
        return {}
    return {
        "admin_links": [
            {"url": url_for("mail_admin.settings"), "label": "E-mail settings"},
            {"url": url_for("mail_admin.templates"), "label": "E-mail templates"},
            {"url": url_for("mail_admin.outbox"), "label": "E-mail outbox"},
        ]
    }


def admin_required(view: Callable) -> Callable:
    """Refuse the view with 403 to anyone but a signed-in administrator."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        if not (current_user.is_authenticated and current_user.is_admin):
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _db():
    return current_app.extensions["database"]


def _settings():
    return current_app.extensions["settings"]


# -- SMTP settings --------------------------------------------------------------


class SmtpForm(FlaskForm):
    host = StringField("Host", validators=[DataRequired("Enter the host name.")])
    port = IntegerField(
        "Port",
        validators=[NumberRange(1, 65535, "Enter a port from 1 to 65535.")],
        description="Usually 25 (none), 587 (STARTTLS) or 465 (implicit TLS).",
    )
    security = SelectField(
        "Security",
        choices=[
            SelectChoice("none", "None (trusted relay only)"),
            SelectChoice("starttls", "STARTTLS"),
            SelectChoice("tls", "Implicit TLS"),
        ],
    )
    username = StringField("Username", validators=[Optional()])
    password = PasswordField(
        "Password",
        validators=[Optional()],
        description="Leave empty to keep the stored password.",
        render_kw={"autocomplete": "new-password"},
    )
    sender = StringField(
        "Sender",
        validators=[DataRequired("Enter the sender address.")],
        description="For example: Token Provisioning <provisioning@example.org>",
    )
    timeout = IntegerField(
        "Timeout (seconds)",
        default=10,
        validators=[NumberRange(1, 600, "Enter 1 to 600 seconds.")],
    )
    ca_file = StringField(
        "CA file",
        validators=[Optional()],
        description="PEM file of CA certificates to trust for an internal CA.",
    )


class TestMailForm(FlaskForm):
    to = EmailField(
        "Send a test mail to",
        validators=[
            DataRequired("Enter an address."),
            Regexp(_ADDRESS, message="Enter an address like name@example.org."),
        ],
    )


class PlainForm(FlaskForm):
    """A button that needs nothing but the CSRF token."""


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings():
    """Show and change the SMTP settings; the password is never shown back."""
    db = _db()
    try:
        with db.read() as session:
            view = describe_smtp_settings(session)
    except MailError as error:
        view = None
        flash(str(error), "error")

    # On POST the form takes the submitted values; ``obj`` fills a fresh page.
    form = SmtpForm(obj=view)
    if form.validate_on_submit():
        try:
            with db.write() as session:
                smtp = smtp_settings_from_form(
                    session,
                    _settings(),
                    host=form.host.data or "",
                    port=form.port.data or 0,
                    security=form.security.data or "",
                    sender=form.sender.data or "",
                    username=form.username.data or "",
                    password=form.password.data or "",
                    timeout=form.timeout.data or 0,
                    ca_file=form.ca_file.data or "",
                )
                save_smtp_settings(
                    session, _settings(), smtp, actor=current_user.username
                )
        except ValidationFailed as error:
            for name, message in error.field_errors.items():
                target = getattr(form, name, None)
                if target is not None:
                    target.errors = [*target.errors, message]
                else:
                    flash(message, "error")
        except ConfigurationError as error:
            flash(str(error), "error")
        else:
            flash("SMTP settings saved.", "success")
            return redirect(url_for(".settings"))
    # A password typed into the form is never sent back to the browser.
    form.password.data = ""

    return render_template(
        "mail_admin/settings.html",
        form=form,
        view=view,
        test_form=TestMailForm(),
        plain_form=PlainForm(),
    )


@bp.post("/settings/test")
@admin_required
def send_test():
    """Send a test mail with the settings in force and report the server's answer."""
    form = TestMailForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "error")
        return redirect(url_for(".settings"))
    try:
        with _db().read() as session:
            smtp = current_smtp_settings(session, _settings())
        answer = test_connection(smtp, form.to.data)
    except MailDeliveryError as error:
        answer = (
            f" Server's answer: {error.server_answer}" if error.server_answer else ""
        )
        flash(f"The test mail was not sent: {error}{answer}", "error")
    except (MailError, ConfigurationError) as error:
        flash(f"The test mail was not sent: {error}", "error")
    else:
        flash(
            f"Test mail to {form.to.data} accepted. Server's answer: {answer}",
            "success",
        )
    return redirect(url_for(".settings"))


@bp.post("/settings/forget")
@admin_required
def forget_settings():
    """Drop the stored settings so that the SMTP_* variables apply again."""
    if PlainForm().validate_on_submit():
        with _db().write() as session:
            clear_smtp_settings(session, actor=current_user.username)
        flash("Stored SMTP settings removed; the SMTP_* variables apply.", "success")
    return redirect(url_for(".settings"))


# -- templates ------------------------------------------------------------------


class TemplateForm(FlaskForm):
    subject = StringField("Subject")
    text = TextAreaField("Plain text", render_kw={"rows": 16, "spellcheck": "false"})
    html = TextAreaField("HTML", render_kw={"rows": 16, "spellcheck": "false"})


def _request_type_choices() -> list[tuple[str, str]]:
    return [("", "All request types")] + [
        (key, rtype.label) for key, rtype in REQUEST_TYPES.items()
    ]


@bp.get("/templates")
@admin_required
def templates():
    """List the events and which of them have custom templates."""
    with _db().read() as session:
        overrides = [
            (row.event, row.request_type, row.updated_by, row.updated_at)
            for row in list_template_overrides(session)
        ]
    return render_template(
        "mail_admin/templates.html",
        events=[(event, EVENT_LABELS.get(event, event)) for event in EVENTS],
        overrides=overrides,
        request_types=dict(_request_type_choices()),
    )


@bp.route("/templates/<event>", methods=["GET", "POST"])
@admin_required
def edit_template(event: str):
    """Edit one event's template for a request type, with a preview."""
    if event not in EVENTS:
        abort(404)
    request_type = request.values.get("request_type", "")
    if request_type and request_type not in REQUEST_TYPES:
        abort(404)

    db = _db()
    with db.read() as session:
        sources = effective_sources(session, event, request_type)
        custom = template_overrides(session, event, request_type)

    form = TemplateForm(data=sources)
    preview = None
    problems: dict[str, str] = {}
    if request.method == "POST" and form.validate_on_submit():
        submitted = {kind: getattr(form, kind).data or "" for kind in TEMPLATE_KINDS}
        action = request.form.get("action", "preview")
        try:
            if action == "save":
                with db.write() as session:
                    save_template_override(
                        session,
                        event=event,
                        request_type=request_type,
                        sources=submitted,
                        actor=current_user.username,
                    )
                flash("Template saved.", "success")
                return redirect(
                    url_for(".edit_template", event=event, request_type=request_type)
                )
            if action == "reset":
                with db.write() as session:
                    delete_template_override(
                        session,
                        event=event,
                        request_type=request_type,
                        actor=current_user.username,
                    )
                flash("Template reset to the default.", "success")
                return redirect(
                    url_for(".edit_template", event=event, request_type=request_type)
                )
            preview = preview_template(event, submitted)
        except ValidationFailed as error:
            problems = error.field_errors
        except MailError as error:
            flash(str(error), "error")
    elif request.method == "GET":
        try:
            preview = preview_template(event, sources)
        except MailError as error:
            flash(str(error), "error")

    return render_template(
        "mail_admin/template_edit.html",
        event=event,
        event_label=EVENT_LABELS.get(event, event),
        request_type=request_type,
        request_types=_request_type_choices(),
        form=form,
        custom=custom,
        preview=preview,
        problems=problems,
        variables=TEMPLATE_VARIABLES,
        filters=TEMPLATE_FILTERS,
    )


# -- outbox ---------------------------------------------------------------------


class ResendForm(FlaskForm):
    address = EmailField(
        "Send to",
        validators=[
            Optional(),
            Regexp(_ADDRESS, message="Enter an address like name@example.org."),
        ],
        description="Leave empty to use the same address.",
    )


@bp.get("/outbox")
@admin_required
def outbox():
    """List the outbox: pending, sending, failed with the server's answer, sent."""
    status = request.args.get("status") or None
    if status is not None and status not in OutboxStatus.ALL:
        abort(404)
    # Rendered inside the transaction: the read session expires the rows.
    with _db().read() as session:
        counts = outbox_counts(session)
        total = counts.get(status, 0) if status else sum(counts.values())
        pages = max(1, math.ceil(total / OUTBOX_PAGE_SIZE))
        number = min(page_number(), pages)
        rows = list_outbox(
            session,
            status=status,
            limit=OUTBOX_PAGE_SIZE,
            offset=(number - 1) * OUTBOX_PAGE_SIZE,
        )
        return render_template(
            "mail_admin/outbox.html",
            page=Page(rows, number, OUTBOX_PAGE_SIZE, total),
            counts=counts,
            status=status,
            resend_form=ResendForm(),
            send_now_form=FlaskForm(),
        )


@bp.post("/outbox/send-now")
@admin_required
def send_outbox_now():
    """Bring every waiting message forward, for the worker's next pass."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    with _db().write() as session:
        count = send_waiting_now(session, actor=current_user.username)
    if count:
        flash(
            f"{count} waiting e-mail(s) brought forward; the worker sends them on "
            "its next pass.",
            "success",
        )
    else:
        flash("No e-mail was waiting for a later attempt.", "info")
    return redirect(url_for(".outbox", status="pending"))


@bp.post("/outbox/<outbox_id>/resend")
@admin_required
def resend_message(outbox_id: str):
    """Queue a failed message again, optionally to a corrected address."""
    form = ResendForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "error")
        return redirect(url_for(".outbox", status="failed"))
    try:
        with _db().write() as session:
            message = resend(
                session,
                outbox_id,
                actor=current_user.username,
                address=form.address.data or None,
            )
            recipient = message.recipient
    except ProvisioningError as error:
        flash(str(error), "error")
    else:
        flash(f"E-mail to {recipient} queued again.", "success")
    return redirect(url_for(".outbox", status="failed"))
