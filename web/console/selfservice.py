"""The self-service console: start requests, follow them, look after my tokens."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from engine.errors import (
    ConflictError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from engine.provisioning import directory, inventory, software
from engine.provisioning import requests as provisioning
from engine.provisioning.inventory_models import TokenClass, TokenState
from engine.provisioning.request_models import RequestStatus

from ..extensions import limiter
from ..forms import ActionForm, CancelRequestForm, CodeForm
from ..views import error_page, status_for
from . import requestinfo
from .base import actor, paginate, reading, rolled_back, settings, writing

logger = logging.getLogger(__name__)

bp = Blueprint("selfservice", __name__)

#: what each request type is for, in the words of the person choosing
DESCRIPTIONS = {
    "new_token": "A first or additional token: a hardware key fob or a "
    "software token in the authenticator app on your phone.",
    "replace_expiring_token": "Your token expires soon; get the next one "
    "before it stops working.",
    "replace_lost_token": "Your token is lost or broken. It is disabled at "
    "once so nobody else can use it, and a new one is sent.",
    "ondemand_tokencode": "Receive tokencodes by SMS or e-mail when you "
    "sign in, without carrying a token.",
    "group_membership": "Join a user group, for example to reach the VPN.",
}
SELF_SERVICE_TYPES = [k for k in provisioning.REQUEST_TYPES if k != "new_account"]
ACCOUNT_LIMIT = "5 per minute"


@bp.get("/")
@login_required
def home():
    """Show my open requests, my tokens and what waits for me."""
    me = actor()
    with reading() as session:
        mine = provisioning.list_requests(session, me, mine=True, limit=200)
        tokens = inventory.tokens_of(session, me.username)
    open_requests = [r for r in mine if r.status == RequestStatus.PENDING]
    return render_template(
        "home.html",
        open_requests=open_requests,
        recent=[r for r in mine if r.status != RequestStatus.PENDING][:5],
        tokens=tokens,
        labels=_labels(),
        to_enable=[t for t in tokens if _needs_enabling(t)],
    )


def _labels() -> dict[str, str]:
    return {k: t.label for k, t in provisioning.REQUEST_TYPES.items()}


def _needs_enabling(token) -> bool:
    hardware_arrived = (
        token.model.token_class == TokenClass.HARDWARE
        and token.state == TokenState.SHIPPED
    )
    software_waiting = (
        token.model.token_class == TokenClass.SOFTWARE
        and token.state == TokenState.ASSIGNED
    )
    return hardware_arrived or software_waiting


# -- starting a request -----------------------------------------------------


@bp.get("/requests/new")
@login_required
def new_request():
    """Offer the request types to choose from."""
    types = [
        (provisioning.REQUEST_TYPES[k], DESCRIPTIONS.get(k, ""))
        for k in SELF_SERVICE_TYPES
    ]
    return render_template("requests/choose.html", types=types)


@bp.route("/requests/new/<request_type>", methods=["GET", "POST"])
@login_required
def start_request(request_type: str):
    """Show and submit the form of one request type."""
    if request_type not in SELF_SERVICE_TYPES:
        abort(404, description=f"There is no request type '{request_type}'.")
    rtype = provisioning.REQUEST_TYPES[request_type]
    values = {f.id: request.args.get(f.id, "") for f in rtype.fields}
    errors: dict[str, str] = {}
    problem = None
    status = 200
    if request.method == "POST":
        values = {f.id: request.form.get(f.id, "").strip() for f in rtype.fields}
        try:
            with writing() as session:
                created = provisioning.submit_request(
                    session,
                    actor=actor(),
                    request_type=request_type,
                    form=values,
                    settings=settings(),
                )
                request_id = created.id
        except ValidationFailed as err:
            errors = err.field_errors
            problem = str(err) if not errors else None
            status = 422
        except ConflictError as err:
            problem, status = str(err), 409
        else:
            flash(
                f"Request {request_id} is submitted. You can follow it here.",
                "success",
            )
            return redirect(
                url_for("selfservice.request_detail", request_id=request_id)
            )
    with reading() as session:
        choices = _field_choices(session, rtype)
    return (
        render_template(
            "requests/start.html",
            rtype=rtype,
            description=DESCRIPTIONS.get(request_type, ""),
            values=values,
            errors=errors,
            problem=problem,
            choices=choices,
        ),
        status,
    )


def _field_choices(session, rtype) -> dict[str, list[tuple[str, str]]]:
    """Return the options of fields whose values come from the inventory."""
    choices: dict[str, list[tuple[str, str]]] = {}
    field_ids = rtype.field_ids
    if "token_model" in field_ids:
        choices["token_model"] = [
            (m.code, f"{m.name} ({m.code}, {m.token_class})")
            for m in inventory.list_models(session)
            if m.active
        ]
    if "old_serial" in field_ids:
        choices["old_serial"] = [
            (
                t.serial,
                f"{t.serial} · {t.model.name} · {t.state}"
                + (f" · expires {t.expires_on}" if t.expires_on else ""),
            )
            for t in inventory.tokens_of(session, actor().username)
            if t.state in (TokenState.ACTIVE, TokenState.SHIPPED, TokenState.ASSIGNED)
        ]
    return choices


# -- following my requests --------------------------------------------------


@bp.get("/requests")
@login_required
def my_requests():
    """List my requests with status, current step and who holds them."""
    status = request.args.get("status") or None
    if status and status not in RequestStatus.ALL:
        status = None
    with reading() as session:
        found = provisioning.list_requests(
            session,
            actor(),
            mine=True,
            status=status,
            limit=provisioning.MAX_LIST_LIMIT,
        )
        page = paginate(found)
    return render_template(
        "requests/list.html",
        page=page,
        labels=_labels(),
        statuses=RequestStatus.ALL,
        status=status,
    )


@bp.get("/requests/<int:request_id>")
@login_required
def request_detail(request_id: int):
    """Show one request: status, holder, timeline and the diagram."""
    return _request_page(request_id, CancelRequestForm())


def _request_page(request_id: int, cancel_form: CancelRequestForm, status=200):
    with reading() as session:
        view = provisioning.get_request(session, actor(), request_id)
        definition = view.instance.definition
        page = render_template(
            "requests/detail.html",
            view=view,
            req=view.request,
            label=_labels().get(view.request.request_type, view.request.request_type),
            xml=definition.file.content.decode("utf-8", "replace"),
            labels=requestinfo.option_labels(session, view.request),
            cancel_form=cancel_form,
        )
    return page, status


@bp.post("/requests/<int:request_id>/cancel")
@login_required
def cancel_request(request_id: int):
    """Cancel a pending request, mine or (as an administrator) in my domain."""
    form = CancelRequestForm()
    if not form.validate_on_submit():
        return _request_page(request_id, form, 422)
    with writing() as session:
        provisioning.cancel_request(
            session, actor(), request_id, (form.reason.data or "").strip()
        )
    flash(f"Request {request_id} is cancelled.", "success")
    return redirect(url_for("selfservice.request_detail", request_id=request_id))


# -- my tokens --------------------------------------------------------------


@bp.get("/tokens")
@login_required
def my_tokens():
    """List my tokens with what I can do with each."""
    with reading() as session:
        tokens = inventory.tokens_of(session, actor().username)
        carriers = {t.serial: requestinfo.carrier_name(session, t) for t in tokens}
    days = settings().expiry_replacement_days
    return render_template(
        "tokens/mine.html",
        tokens=tokens,
        action_form=ActionForm(),
        needs_enabling=_needs_enabling,
        carriers=carriers,
        today=datetime.now(UTC).date(),
        replacement_days=days,
        replaceable_from={
            t.serial: t.expires_on - timedelta(days=days)
            for t in tokens
            if t.expires_on is not None
        },
    )


def _my_token(session, serial: str):
    token = inventory.find_token(session, serial)
    if token is None or token.owner != actor().username:
        raise NotFound(f"You have no token with serial number {serial}.")
    return token


@bp.post("/tokens/<serial>/received")
@login_required
def token_received(serial: str):
    """Enable a hardware token that has arrived."""
    with writing() as session:
        _my_token(session, serial)
        inventory.enable_hardware_token(session, actor(), serial)
    flash(f"Token {serial} is enabled. You can sign in with it now.", "success")
    return redirect(url_for("selfservice.my_tokens"))


@bp.post("/tokens/<serial>/emergency")
@login_required
def token_emergency(serial: str):
    """Give a temporary code for an active token that is out of reach."""
    with writing() as session:
        _my_token(session, serial)
        code = software.emergency_access(session, actor(), serial)
        token = inventory.find_token(session, serial)
        expires = token.emergency_expires_at
    return render_template(
        "tokens/emergency.html", serial=serial, code=code, expires=expires
    )


@bp.post("/tokens/<serial>/emergency/end")
@login_required
def token_emergency_end(serial: str):
    """End emergency access: the token is back with me."""
    with writing() as session:
        _my_token(session, serial)
        software.end_emergency_access(session, actor(), serial)
    flash(f"Emergency access for {serial} has ended; use your token again.", "success")
    return redirect(url_for("selfservice.my_tokens"))


@bp.route("/activate/<link>", methods=["GET", "POST"])
@login_required
def activate(link: str):
    """Open an activation link: show the QR code once, then ask for a first code.

    Opening the page does not spend the link (mail scanners open links);
    the button that reveals the QR code does. A link that cannot work (used,
    expired, someone else's) says so at once instead of offering the button.
    """
    if request.method == "GET":
        problem = _link_problem(link)
        if problem is not None:
            return _link_refused(*problem)
        return render_template("tokens/activate_start.html", form=ActionForm())
    try:
        with writing() as session:
            token, uri, qr_svg = software.activation_details(
                session, link, actor=actor(), settings=settings()
            )
            serial = token.serial
    except (NotFound, PermissionDenied, ConflictError) as err:
        # Raising rolled the transaction back, so the link stays as it was.
        return _link_refused(str(err), status_for(err))
    return render_template(
        "tokens/activate.html",
        serial=serial,
        uri=uri,
        secret=_secret_of(uri),
        qr_svg=qr_svg,
        form=CodeForm(),
    )


def _link_problem(link: str) -> tuple[str, int] | None:
    """Return why an activation link cannot work, and its status, or None.

    The engine has no read-only check of a link, so open it in a transaction
    that is always rolled back: the link stays unspent whatever happens.
    """
    try:
        with rolled_back() as session:
            software.activation_details(
                session, link, actor=actor(), settings=settings()
            )
    except (NotFound, PermissionDenied, ConflictError) as err:
        return str(err), status_for(err)
    return None


def _link_refused(message: str, status: int):
    # The engine's messages already say what to do; the general advice of a
    # 403 ("ask for the role") would be wrong here.
    return error_page(status, message, advice="")


def _secret_of(uri: str) -> str:
    """Return the secret of an otpauth URI, grouped by four for typing."""
    secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@bp.route("/tokens/<serial>/enable", methods=["GET", "POST"])
@login_required
def token_enable(serial: str):
    """Enable my software token with the first code from the app."""
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        code = form.code.data.replace(" ", "")
        try:
            with writing() as session:
                _my_token(session, serial)
                software.enable_software_token(
                    session, actor(), serial, code, settings=settings()
                )
        except ValidationFailed as err:
            form.code.errors = [err.field_errors.get("code", str(err))]
            status = 422
        else:
            flash(f"Software token {serial} is enabled.", "success")
            return redirect(url_for("selfservice.my_tokens"))
    elif request.method == "POST":
        status = 422
    with reading() as session:
        token = _my_token(session, serial)
        if token.state != TokenState.ASSIGNED:
            flash(f"Token {serial} is {token.state}; nothing to enable.", "info")
            return redirect(url_for("selfservice.my_tokens"))
    return render_template("tokens/enable.html", serial=serial, form=form), status


# -- accounts for people not in the directory yet ---------------------------


@bp.route("/account-request", methods=["GET", "POST"])
@limiter.limit(ACCOUNT_LIMIT, methods=["POST"])
def account_request():
    """Let someone without an account ask for one."""
    if current_user.is_authenticated:
        return redirect(url_for("selfservice.home"))
    rtype = provisioning.REQUEST_TYPES["new_account"]
    values = {f.id: "" for f in rtype.fields}
    errors: dict[str, str] = {}
    problem, status, done = None, 200, None
    if request.method == "POST":
        values = {f.id: request.form.get(f.id, "").strip() for f in rtype.fields}
        try:
            with writing() as session:
                created = provisioning.submit_account_request(
                    session, form=values, settings=settings()
                )
                done = created.id
        except ValidationFailed as err:
            errors, status = err.field_errors, 422
            problem = str(err) if not errors else None
        except ConflictError as err:
            problem, status = str(err), 409
    with reading() as session:
        domains = [d.path for d in directory.list_domains(session)]
    return (
        render_template(
            "requests/account.html",
            rtype=rtype,
            values=values,
            errors=errors,
            problem=problem,
            done=done,
            choices={"domain_path": [(d, d) for d in domains]},
        ),
        status,
    )
