"""The task inbox: queues, filters, claiming, and the task page with its form."""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from flask import (
    Blueprint,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import instances
from engine.deployments import list_definitions
from engine.errors import (
    NotFound,
    PermissionDenied,
    TaskAlreadyCompleted,
    ValidationFailed,
)
from engine.identity import (
    ADMINISTRATOR,
    REQUEST_APPROVER,
    TOKEN_DISTRIBUTOR,
    actor_for,
)
from engine.instances import TaskFilter
from engine.models import HumanTask, TaskStatus

from ..auth import role_required
from ..forms import ActionForm, AssignForm
from . import requestinfo
from .base import (
    PAGE_SIZE,
    Page,
    actor,
    forbid,
    page_number,
    reading,
    settings,
    writing,
)

logger = logging.getLogger(__name__)

bp = Blueprint("inbox", __name__)

STAFF_ROLES = (REQUEST_APPROVER, TOKEN_DISTRIBUTOR, ADMINISTRATOR)
CARRIED_FIELDS = ("token_model", "shipping_address")
AGES = {"1": "older than 1 day", "3": "older than 3 days", "7": "older than a week"}
DUES = {
    "overdue": "overdue",
    "today": "due within a day",
    "week": "due within a week",
    "none": "no due date",
}
SORTS = {
    "oldest": "oldest first",
    "newest": "newest first",
    "due": "due date",
    "type": "request type",
}


@bp.app_context_processor
def _inbox_count() -> dict:
    """Give the navigation the number of tasks waiting for the signed-in user."""
    if not getattr(current_user, "is_authenticated", False):
        return {}
    if not any(current_user.actor.has_role(r) for r in STAFF_ROLES):
        return {}
    try:
        with reading() as session:
            count = instances.count_tasks(session, current_user.actor)
    except Exception:  # noqa: BLE001 - a count must never break a page
        logger.warning("Could not count the inbox", exc_info=True)
        return {}
    return {"inbox_count": count}


@bp.get("/inbox")
@role_required(*STAFF_ROLES)
def inbox():
    """List the tasks I may work, by queue, with filters, sort and pages."""
    me = actor()
    view = request.args.get("view", "all")
    queue = view.removeprefix("queue:") if view.startswith("queue:") else None
    with reading() as session:
        names = _process_names(session)
        counts = _counts(session, me)
        where = _filter(
            assigned_only=view == "mine",
            queue=queue,
            process_key=request.args.get("type") or None,
        )
        total = instances.count_tasks(session, me, where)
        number = min(page_number(), max(1, math.ceil(total / PAGE_SIZE)))
        items = instances.list_tasks(
            session,
            me,
            where=where,
            order=request.args.get("sort", "oldest"),
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
        )
        page = Page(items, number, PAGE_SIZE, total)
        rows = [
            {"task": t, "instance": t.instance, "type": names.get(t.process_key)}
            for t in page.items
        ]
        domains = sorted({scope for _, scope in me.grants})
    return render_template(
        "inbox/inbox.html",
        rows=rows,
        page=page,
        counts=counts,
        view=view,
        names=names,
        domains=domains,
        ages=AGES,
        dues=DUES,
        sorts=SORTS,
        action_form=ActionForm(),
    )


def _process_names(session: Session) -> dict[str, str]:
    return {d.key: d.name for d in list_definitions(session)}


def _counts(session: Session, me) -> dict:
    queues = {
        role: instances.count_tasks(session, me, TaskFilter(queue=role))
        for role in sorted({r for r, _ in me.grants if r != ADMINISTRATOR})
    }
    return {
        "all": instances.count_tasks(session, me),
        "mine": instances.count_tasks(session, me, TaskFilter(assigned_only=True)),
        "queues": queues,
    }


def _filter(**fields) -> TaskFilter:
    """Read the inbox filters from the query string."""
    age = request.args.get("age", "")
    due = request.args.get("due", "")
    return TaskFilter(
        domain_path=request.args.get("domain", "").strip() or None,
        older_than=timedelta(days=int(age)) if age in AGES else None,
        due=due if due in DUES else None,
        **fields,
    )


# -- one task ---------------------------------------------------------------


def _visible_task(session: Session, task_id: str) -> HumanTask:
    """Return the task if the actor may see it; 404 otherwise, so as not to leak."""
    me = actor()
    task = session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist; reload your task list.")
    groups = task.candidate_groups
    visible = (
        me.has_role(ADMINISTRATOR, task.domain_path)
        or any(me.has_role(g, task.domain_path) for g in groups)
        or me.username in (task.assignee, task.completed_by)
        or me.username in task.candidate_users
    )
    if not visible:
        raise NotFound(
            f"Task {task_id} does not exist or is outside your security domains."
        )
    return task


def _why_not(session: Session, task: HumanTask) -> str | None:
    """Return why the actor may not work the task now, or None if they may."""
    if task.status != TaskStatus.OPEN:
        return None
    try:
        instances.check_may_work(session, actor(), task, task.instance)
    except PermissionDenied as err:
        return str(err)
    return None


def _render_task(
    session: Session,
    task: HumanTask,
    *,
    errors: dict | None = None,
    values: dict | None = None,
    conflict: str | None = None,
    assign_form: AssignForm | None = None,
    status: int = 200,
):
    view = instances.describe_instance(session, task.instance_id)
    info = requestinfo.for_instance(session, task.instance_id)
    request_view = requestinfo.staff_view(session, actor(), info)
    completer = None
    if task.status == TaskStatus.COMPLETED:
        completer = (task.completed_by, task.completed_at)
    fields = task.form.get("fields", [])
    # Carry over from the request only what the step is meant to confirm; a
    # previous approver's comment must not appear as this approver's.
    prefill = {k: view.data.get(k) for k in CARRIED_FIELDS if view.data.get(k)}
    prefill.update(task.saved_data or {})
    prefill.update(values or {})
    serials = requestinfo.available_serials(session, actor(), task, prefill)
    return (
        render_template(
            "inbox/task.html",
            task=task,
            view=view,
            info=info,
            request_view=request_view,
            fields=fields,
            prefill=prefill,
            errors=errors or {},
            conflict=conflict,
            completer=completer,
            why_not=_why_not(session, task),
            serials=serials,
            diagram_xml=view.definition.file.content.decode("utf-8", "replace"),
            action_form=ActionForm(),
            assign_form=assign_form or AssignForm(),
            labels=requestinfo.option_labels(session, info) if info else {},
            may_assign=_may_assign(task),
            decision_field=_decision_field(fields),
        ),
        status,
    )


def _decision_field(fields: list[dict]) -> dict | None:
    """Return the enum field named 'decision', shown as one button per option."""
    for f in fields:
        if f["id"] == "decision" and f.get("type") == "enum":
            return f
    return None


def _may_assign(task: HumanTask) -> bool:
    me = actor()
    return me.has_role(ADMINISTRATOR, task.domain_path) or any(
        me.has_role(g, task.domain_path) for g in task.candidate_groups
    )


@bp.get("/tasks/<task_id>")
@role_required(*STAFF_ROLES)
def task_page(task_id: str):
    """Show a task with its request, history, diagram and form."""
    with reading() as session:
        task = _visible_task(session, task_id)
        return _render_task(session, task)


@bp.post("/tasks/<task_id>")
@role_required(*STAFF_ROLES)
def submit_task(task_id: str):
    """Complete or defer a task with the values of its form."""
    action = request.form.get("_action", "complete")
    with reading() as session:
        task = _visible_task(session, task_id)
        fields = task.form.get("fields", [])
        data = _form_values(fields, request.form, complete=action != "defer")
    try:
        with writing() as session:
            outcome = requestinfo.submit_task(
                session, actor(), task_id, action, data, settings()
            )
    except ValidationFailed as err:
        with reading() as session:
            task = _visible_task(session, task_id)
            return _render_task(
                session, task, errors=err.field_errors or {}, values=data, status=422
            )
    except TaskAlreadyCompleted as err:
        with reading() as session:
            task = _visible_task(session, task_id)
            return _render_task(session, task, conflict=str(err), status=409)
    flash(outcome, "success")
    if action == "defer":
        return redirect(url_for("inbox.task_page", task_id=task_id))
    return redirect(url_for("inbox.inbox"))


def _form_values(fields: list[dict], form, *, complete: bool) -> dict:
    """Read the submitted values of the task's form fields (and no others)."""
    data = {}
    for f in fields:
        fid = f["id"]
        if f.get("type") == "boolean":
            if fid in form or complete:
                data[fid] = form.get(fid) in ("on", "true", "1", "yes")
            continue
        if fid in form:
            data[fid] = form.get(fid, "").strip()
    return data


@bp.post("/tasks/<task_id>/claim")
@role_required(*STAFF_ROLES)
def claim(task_id: str):
    """Take a task from its queue."""
    with writing() as session:
        _visible_task(session, task_id)
        task = instances.claim_task(session, task_id, actor=actor())
        flash(f"You took '{task.name}' of request {task.instance_id}.", "success")
    return _back(task_id)


@bp.post("/tasks/<task_id>/unclaim")
@role_required(*STAFF_ROLES)
def unclaim(task_id: str):
    """Put a task back in its queue."""
    with writing() as session:
        _visible_task(session, task_id)
        task = instances.unclaim_task(session, task_id, actor=actor())
        flash(f"'{task.name}' is back in its queue.", "success")
    return _back(task_id)


@bp.post("/tasks/<task_id>/assign")
@role_required(*STAFF_ROLES)
def assign(task_id: str):
    """Assign a task to someone else in its queue and scope."""
    form = AssignForm()
    with reading() as session:
        task = _visible_task(session, task_id)
        if not _may_assign(task):
            forbid(
                f"You may not assign task '{task.name}'; only members of its "
                "queue in its security domain, or administrators, can."
            )
    if form.validate():
        username = form.assignee.data.strip()
        try:
            with writing() as session:
                task = _visible_task(session, task_id)
                assignee = actor_for(session, username)
                try:
                    task = instances.assign_task(
                        session, task_id, actor=actor(), assignee=assignee
                    )
                except PermissionDenied as err:
                    # The engine words its refusal for the person who would
                    # work the task ("You started..."); say it of the assignee.
                    raise PermissionDenied(
                        _why_assignee_cannot(session, task, assignee) or str(err)
                    ) from err
                flash(f"'{task.name}' is now assigned to {username}.", "success")
            return _back(task_id)
        except (NotFound, PermissionDenied) as err:
            if isinstance(err, NotFound) and not _user_missing(err, username):
                raise
            form.assignee.errors = [str(err)]
    with reading() as session:
        task = _visible_task(session, task_id)
        return _render_task(session, task, assign_form=form, status=422)


def _user_missing(err: NotFound, username: str) -> bool:
    """Tell "no such assignee" apart from "no such task" (a real 404)."""
    return f"No active user named '{username}'" in str(err)


def _why_assignee_cannot(session: Session, task: HumanTask, assignee) -> str | None:
    """Say why ``assignee`` may not work ``task``, naming them, or None."""
    instance = task.instance
    who = assignee.username
    what = instance.business_key or f"instance {instance.id}"
    if who == instance.initiator:
        return (
            f"{who} started {what}, so separation of duties keeps them from "
            f"working its task '{task.name}'. Assign it to someone else."
        )
    earlier = session.scalars(
        select(HumanTask).where(
            HumanTask.instance_id == task.instance_id,
            HumanTask.task_spec == task.task_spec,
            HumanTask.completed_by == who,
            HumanTask.id != task.id,
        )
    ).first()
    if earlier is not None:
        return (
            f"{who} already completed an earlier '{task.name}' step of {what}; "
            "a different person must take this one. Assign it to someone else."
        )
    groups = task.candidate_groups or []
    if groups and not any(assignee.has_role(g, task.domain_path) for g in groups):
        needed = " or ".join(groups)
        return (
            f"{who} does not hold the {needed} role for security domain "
            f"'{task.domain_path}', so they cannot work this task. Assign it to "
            "someone in its queue."
        )
    return None


def _back(task_id: str):
    if request.form.get("_next") == "inbox":
        return redirect(url_for("inbox.inbox"))
    return redirect(url_for("inbox.task_page", task_id=task_id))
