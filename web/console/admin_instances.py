"""Administration of process instances: search, detail, cancel, retry incidents."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from engine import instances
from engine.deployments import list_definitions
from engine.identity import ADMINISTRATOR
from engine.models import InstanceStatus, ProcessInstance

from ..auth import role_required
from ..forms import ActionForm, ReasonForm
from . import requestinfo
from .admin_bp import bp
from .base import (
    actor,
    paginate,
    parse_day,
    reading,
    require_admin_over,
    settings,
    writing,
)

SEARCH_LIMIT = 2000
STATUSES = ("running", "incident", "completed", "cancelled")


@bp.get("/instances")
@role_required(ADMINISTRATOR)
def instances_page():
    """Search process instances in my domains by user, type, status and date."""
    args = request.args
    query = select(ProcessInstance).order_by(ProcessInstance.id.desc())
    scopes = actor().scopes(ADMINISTRATOR)
    query = query.where(
        or_(
            *(
                or_(
                    ProcessInstance.domain_path == s,
                    ProcessInstance.domain_path.startswith(s + "/", autoescape=True),
                )
                for s in scopes
            )
        )
    )
    if args.get("user"):
        query = query.where(ProcessInstance.initiator == args["user"].strip())
    if args.get("type"):
        query = query.where(ProcessInstance.process_key == args["type"])
    if args.get("status") in STATUSES:
        query = query.where(ProcessInstance.status == args["status"])
    since, until = parse_day(args.get("from")), parse_day(args.get("to"), end=True)
    if since:
        query = query.where(ProcessInstance.created_at >= since)
    if until:
        query = query.where(ProcessInstance.created_at <= until)
    with reading() as session:
        found = list(session.scalars(query.limit(SEARCH_LIMIT)))
        page = paginate(found)
        names = {d.key: d.name for d in list_definitions(session)}
        return render_template(
            "admin/instances.html",
            page=page,
            names=names,
            statuses=STATUSES,
            capped=len(found) >= SEARCH_LIMIT,
        )


@bp.get("/instances/<int:instance_id>")
@role_required(ADMINISTRATOR)
def instance_detail(instance_id: int):
    """Show an instance: diagram with the active step, history, data, incidents."""
    with reading() as session:
        instance = instances.get_instance(session, instance_id)
        require_admin_over(instance.domain_path, f"Instance {instance_id}")
        view = instances.describe_instance(session, instance_id)
        return render_template(
            "admin/instance.html",
            view=view,
            info=requestinfo.for_instance(session, instance_id),
            xml=view.definition.file.content.decode("utf-8", "replace"),
            cancel_form=ReasonForm(),
            action_form=ActionForm(),
            active=instance.status in InstanceStatus.ACTIVE,
        )


@bp.post("/instances/<int:instance_id>/cancel")
@role_required(ADMINISTRATOR)
def instance_cancel(instance_id: int):
    """Cancel a running instance with a reason."""
    form = ReasonForm()
    if not form.validate():
        flash("Give a reason for cancelling.", "error")
        return redirect(url_for("admin.instance_detail", instance_id=instance_id))
    with writing() as session:
        instance = instances.get_instance(session, instance_id)
        require_admin_over(instance.domain_path, f"Instance {instance_id}")
        instances.cancel_instance(
            session, instance_id, actor=actor(), reason=form.reason.data
        )
    flash(f"Instance {instance_id} is cancelled.", "success")
    return redirect(url_for("admin.instance_detail", instance_id=instance_id))


@bp.post("/instances/<int:instance_id>/retry")
@role_required(ADMINISTRATOR)
def instance_retry(instance_id: int):
    """Run the failed step of an instance in incident again."""
    with writing() as session:
        instance = instances.get_instance(session, instance_id)
        require_admin_over(instance.domain_path, f"Instance {instance_id}")
        instance = instances.retry_incident(
            session, instance_id, actor=actor(), settings=settings()
        )
        outcome = instance.status
    if outcome == InstanceStatus.INCIDENT:
        flash(
            "The step failed again; the new error is listed under Incidents.",
            "error",
        )
    else:
        flash(f"Retried: instance {instance_id} is {outcome} again.", "success")
    return redirect(url_for("admin.instance_detail", instance_id=instance_id))
