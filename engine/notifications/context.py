"""The values an e-mail template is rendered with, taken from a process instance.

Everything comes from the engine's own rows: the start variables recorded in
the ``instance_started`` history entry, the values submitted at each task,
and, when a request completes, the data the service tasks wrote (serial
number, activation link). Templates get plain dicts, never ORM objects (see
:func:`engine.mail.render_template`).
"""

from __future__ import annotations

import logging
from typing import Any

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.instances import load
from engine.models import (
    HistoryEntry,
    HumanTask,
    InstanceStatus,
    ProcessInstance,
    TaskStatus,
    User,
)
from engine.provisioning.request_models import ProvisioningRequest
from engine.provisioning.requests import REQUEST_TYPES

from .recipients import SELF_SERVICE_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_SITE_NAME = "Token Provisioning"

# Values the templates show that a step may have changed since the start:
# an approver may correct the token model, a distributor records the delivery.
_TRACKED = (
    "token_class",
    "token_model",
    "shipping_address",
    "serial_number",
    "carrier",
    "tracking_number",
    "delivery_method",
    "activation_link",
)
_DELIVERY = ("serial_number", "carrier", "tracking_number", "activation_link")
# Values picked from a list in a task's form, which mails show by the name
# the form gave the option ("DHL"), not by its id ("dhl").
_CHOSEN_FROM_A_LIST = ("carrier",)

_END_STATUS = {
    "request_rejected": "rejected",
    "request_cancelled": "cancelled",
    "request_expired": "expired",
}


def request_data(
    session: Session, instance: ProcessInstance, *, with_workflow: bool = False
) -> dict[str, Any]:
    """Return the request's variables: start values, then each step's changes.

    With ``with_workflow`` the current workflow data is read as well, which
    holds what service tasks wrote (the activation link of a software token).
    A carrier chosen from the list of a task's form is given by the name the
    form shows ("DHL"), as the process model defines it.
    """
    data: dict[str, Any] = {}
    completed_tasks: list[str] = []
    entries = session.scalars(
        select(HistoryEntry)
        .where(
            HistoryEntry.instance_id == instance.id,
            HistoryEntry.action.in_(("instance_started", "task_completed")),
        )
        .order_by(HistoryEntry.id)
    )
    for entry in entries:
        if entry.action == "instance_started":
            data.update((entry.data or {}).get("variables") or {})
        else:
            data.update(
                (key, value)
                for key, value in (entry.data or {}).items()
                if key in _TRACKED and value not in (None, "")
            )
            if entry.task_id:
                completed_tasks.append(entry.task_id)

    if with_workflow and instance.state:
        workflow = load(session, instance)
        done = workflow.get_tasks(state=TaskState.COMPLETED)
        if done:
            latest = max(done, key=lambda task: task.last_state_change)
            data.update(
                (key, value)
                for key, value in latest.data.items()
                if key in _TRACKED and value not in (None, "")
            )

    for key, names in _option_names(session, completed_tasks).items():
        value = data.get(key)
        if isinstance(value, str) and value in names:
            data[key] = names[value]
    return data


def _option_names(session: Session, task_ids: list[str]) -> dict[str, dict[str, str]]:
    """Return the option names the forms of ``task_ids`` offered, by field and id."""
    if not task_ids:
        return {}
    names: dict[str, dict[str, str]] = {}
    forms = session.scalars(select(HumanTask.form).where(HumanTask.id.in_(task_ids)))
    for form in forms:
        for form_field in (form or {}).get("fields") or []:
            if form_field.get("id") not in _CHOSEN_FROM_A_LIST:
                continue
            names.setdefault(form_field["id"], {}).update(
                (option["id"], option["name"])
                for option in form_field.get("options") or []
                if option.get("name")
            )
    return names


def template_context(
    session: Session,
    instance: ProcessInstance,
    settings: Settings,
    *,
    data: dict[str, Any],
    task: HumanTask | None = None,
    approver: str | None = None,
    comment: str | None = None,
    for_staff: bool = False,
) -> dict[str, Any]:
    """Return the context of one e-mail about ``instance``.

    :param data: from :func:`request_data`.
    :param task: the task the mail is about (the recipient's next work).
    :param approver: username of whoever acted (approved, rejected, cancelled).
    :param comment: text for the requester, never a staff-only note.
    :param for_staff: link to the task, or without one to the instance's page
        in the administration console, rather than to the requester's page.
    """
    base_url = settings.base_url.rstrip("/")
    request_id = session.scalar(
        select(ProvisioningRequest.id).where(
            ProvisioningRequest.instance_id == instance.id
        )
    )
    if for_staff and task is not None:
        link = f"{base_url}/tasks/{task.id}"
    elif for_staff:
        # Incidents and escalations: only this page shows the incident and
        # has the buttons to retry the step or cancel the instance.
        link = f"{base_url}/admin/instances/{instance.id}"
    elif request_id is not None:
        link = f"{base_url}/requests/{request_id}"
    else:
        # An instance started without a request (from a modeler or the API)
        # has no page its initiator may open; the console's home page does.
        link = f"{base_url}/"

    delivery = {key: data.get(key) or None for key in _DELIVERY}
    return {
        "user": _user(session, instance, data),
        "request": {
            "id": str(request_id or instance.id),
            "business_key": instance.business_key or f"#{instance.id}",
            "type_label": _type_label(instance),
            "created": instance.created_at,
            "updated": instance.updated_at,
            "status": _status(instance),
            "token_class": data.get("token_class") or None,
            "token_model": data.get("token_model") or None,
            "current_step": _current_step(session, instance),
        },
        "approver": _person(session, approver) if approver else None,
        "comment": comment or None,
        "link": link,
        "delivery": delivery if any(delivery.values()) else None,
        "task": {"name": task.name, "due": task.due_at} if task else None,
        "site_name": settings.extra.get("SITE_NAME") or DEFAULT_SITE_NAME,
    }


def _user(
    session: Session, instance: ProcessInstance, data: dict[str, Any]
) -> dict[str, str]:
    """Describe the requester for the templates."""
    initiator = instance.initiator
    if initiator.startswith(SELF_SERVICE_PREFIX):
        address = initiator.removeprefix(SELF_SERVICE_PREFIX)
        name = data.get("display_name") or data.get("full_name") or address
        return {"display_name": name, "email": address, "username": ""}
    user = session.scalars(select(User).where(User.username == initiator)).first()
    if user is None:
        return {"display_name": initiator, "email": "", "username": initiator}
    return {
        "display_name": user.display_name,
        "email": user.email,
        "username": user.username,
    }


def _person(session: Session, username: str) -> dict[str, str]:
    """Describe a member of staff by display name."""
    user = session.scalars(select(User).where(User.username == username)).first()
    return {"display_name": user.display_name if user else username}


def _status(instance: ProcessInstance) -> str:
    """Return the request status the templates show."""
    if instance.status == InstanceStatus.COMPLETED:
        return _END_STATUS.get(instance.end_event or "", "completed")
    if instance.status == InstanceStatus.CANCELLED:
        return "cancelled"
    if instance.status == InstanceStatus.INCIDENT:
        return "failed"
    return "pending"


def _current_step(session: Session, instance: ProcessInstance) -> str | None:
    """Return the names of the open tasks, or None once none is open."""
    names = session.scalars(
        select(HumanTask.name)
        .where(
            HumanTask.instance_id == instance.id,
            HumanTask.status == TaskStatus.OPEN,
        )
        .order_by(HumanTask.created_at)
    ).all()
    return ", ".join(dict.fromkeys(names)) or None


def _type_label(instance: ProcessInstance) -> str:
    """Return the request type as people call it."""
    request_type = REQUEST_TYPES.get(instance.process_key)
    if request_type is not None:
        return request_type.label
    return instance.definition.name or instance.process_key
