"""The token inventory: list, CSV import with a per-line report, token actions."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from engine.identity import ADMINISTRATOR, TOKEN_ADMINISTRATOR
from engine.provisioning import directory, inventory, software
from engine.provisioning.inventory import ImportRefused
from engine.provisioning.inventory_models import TokenState

from ..auth import role_required
from ..forms import ActionForm, ImportTokensForm, ReasonForm
from . import requestinfo
from .admin_bp import bp
from .base import actor, paginate, reading, settings, writing

TOKEN_ROLES = (TOKEN_ADMINISTRATOR, ADMINISTRATOR)
LIST_LIMIT = 5000


def _import_domains(session) -> list[str]:
    me = actor()
    return [
        d.path
        for d in directory.list_domains(session)
        if any(me.has_role(r, d.path) for r in TOKEN_ROLES)
    ]


@bp.route("/tokens", methods=["GET", "POST"])
@role_required(*TOKEN_ROLES)
def tokens():
    """List the tokens of my inventories; import a CSV file of tokens."""
    form = ImportTokensForm()
    report, refused, status = None, None, 200
    with reading() as session:
        form.domain_path.choices = _import_domains(session)
    if form.validate_on_submit():
        upload = request.files.get(form.file.name)
        if upload is None or not upload.filename:
            form.file.errors = [
                "Choose a CSV file with the header serial,model,expiry."
            ]
            status = 422
        else:
            try:
                with writing() as session:
                    report = inventory.import_tokens_csv(
                        session,
                        actor(),
                        upload.read(),
                        domain_path=form.domain_path.data,
                        skip_bad_rows=form.skip_bad_rows.data,
                    )
            except ImportRefused as err:
                report, refused, status = err.report, str(err).splitlines()[0], 422
    elif request.method == "POST":
        status = 422

    args = request.args
    with reading() as session:
        found = inventory.list_tokens(
            session,
            actor(),
            state=args.get("state") or None,
            model_code=args.get("model") or None,
            owner=args.get("owner", "").strip() or None,
            domain_path=args.get("domain", "").strip() or None,
            limit=LIST_LIMIT,
        )
        serial = args.get("serial", "").strip().upper()
        if serial:
            found = [t for t in found if serial in t.serial.upper()]
        page = paginate(found)
        models = inventory.list_models(session)
        return (
            render_template(
                "admin/tokens.html",
                page=page,
                form=form,
                report=report,
                refused=refused,
                models=models,
                states=TokenState.ALL,
            ),
            status,
        )


@bp.get("/tokens/<serial>")
@role_required(*TOKEN_ROLES)
def token_detail(serial: str):
    """Show one token with its history and the actions its state allows."""
    with reading() as session:
        token = inventory.get_token(session, actor(), serial)
        history = inventory.token_history(session, serial)
        return render_template(
            "admin/token.html",
            token=token,
            history=history,
            reason_form=ReasonForm(),
            action_form=ActionForm(),
            carrier=requestinfo.carrier_name(session, token),
            transitions=inventory.TRANSITIONS.get(token.state, frozenset()),
        )


@bp.post("/tokens/<serial>/new-activation-link")
@role_required(*TOKEN_ROLES)
def token_new_activation_link(serial: str):
    """Give an assigned software token a new secret and activation link."""
    with writing() as session:
        token = inventory.get_token(session, actor(), serial)
        link = software.new_activation_link(
            session, actor(), serial, settings=settings()
        )
        owner = directory.get_user(session, token.owner) if token.owner else None
        context = {
            "serial": serial,
            "link": link,
            "expires": token.activation_expires_at,
            "owner": owner.username if owner else "",
            "owner_name": owner.display_name if owner else "",
            "owner_email": owner.email if owner else "",
        }
    return render_template("admin/token_link.html", **context)


@bp.post("/tokens/<serial>/<action>")
@role_required(*TOKEN_ROLES)
def token_action(serial: str, action: str):
    """Disable, unassign or mark a token lost, with a reason."""
    operations = {
        "disable": inventory.disable_token,
        "unassign": inventory.unassign_token,
        "lost": inventory.mark_lost,
    }
    if action not in operations:
        flash(f"'{action}' is not something a token can undergo.", "error")
        return redirect(url_for("admin.token_detail", serial=serial))
    form = ReasonForm()
    reason = form.reason.data.strip() if form.reason.data else ""
    with writing() as session:
        inventory.get_token(session, actor(), serial)
        token = operations[action](session, actor(), serial, reason=reason)
        state = token.state
    flash(f"Token {serial} is now {state}.", "success")
    return redirect(url_for("admin.token_detail", serial=serial))
