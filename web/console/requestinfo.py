"""Where the inbox meets the provisioning request behind a task.

A task of a provisioning request is decided and distributed through
:mod:`engine.provisioning.requests`, which records the comment, the note and
the delivery on the request; a task of any other process is completed with
the plain engine functions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import instances
from engine.config import Settings
from engine.identity import Actor
from engine.models import HumanTask
from engine.provisioning import inventory
from engine.provisioning import requests as provisioning
from engine.provisioning.inventory_models import Token
from engine.provisioning.request_models import ProvisioningRequest

APPROVAL_TASKS = {"approve_request"}
HARDWARE_DISTRIBUTION = "distribute_token"
SOFTWARE_DISTRIBUTION = "distribute_software_token"


def for_instance(session: Session, instance_id: int) -> ProvisioningRequest | None:
    """Return the provisioning request run by an instance, if it is one."""
    return session.scalars(
        select(ProvisioningRequest).where(
            ProvisioningRequest.instance_id == instance_id
        )
    ).first()


def option_labels(
    session: Session, request: ProvisioningRequest
) -> dict[str, dict[str, str]]:
    """Return the names of values picked from a list, by field and value id.

    The request form's choices name what the requester picked ("Hardware"),
    and the forms of the request's tasks name what staff picked: the carrier
    is shown as the process model's form lists it ("DHL"), not by its id.
    """
    labels: dict[str, dict[str, str]] = {}
    request_type = provisioning.REQUEST_TYPES.get(request.request_type)
    for request_field in request_type.fields if request_type else ():
        if request_field.choices:
            labels.setdefault(request_field.id, {}).update(request_field.choices)
    forms = session.scalars(
        select(HumanTask.form)
        .where(HumanTask.instance_id == request.instance_id)
        .order_by(HumanTask.created_at)
    )
    for form in forms:
        for form_field in (form or {}).get("fields") or []:
            options = form_field.get("options") or []
            names = {o["id"]: o["name"] for o in options if o.get("name")}
            if names:
                labels.setdefault(form_field["id"], {}).update(names)
    return labels


def carrier_name(session: Session, token: Token) -> str:
    """Name the carrier of a shipped token as its distribution form listed it."""
    if not token.carrier:
        return ""
    request = (
        session.get(ProvisioningRequest, token.request_id) if token.request_id else None
    )
    names = option_labels(session, request).get("carrier", {}) if request else {}
    return names.get(token.carrier) or token.carrier.replace("_", " ").capitalize()


def staff_view(
    session: Session, actor: Actor, request: ProvisioningRequest | None
) -> provisioning.RequestView | None:
    """Return the request as staff see it (timeline with notes), if they may."""
    if request is None or not provisioning.may_see(actor, request):
        return None
    return provisioning.get_request(session, actor, request.id)


def available_serials(
    session: Session, actor: Actor, task: HumanTask, data: dict[str, Any]
) -> list | None:
    """Return the tokens a distributor may pick for a hardware distribution task."""
    if task.task_spec != HARDWARE_DISTRIBUTION or not data.get("token_model"):
        return None
    return inventory.available_serials(
        session,
        actor,
        model_code=str(data["token_model"]),
        domain_path=task.domain_path,
    )


def submit_task(
    session: Session,
    actor: Actor,
    task_id: str,
    action: str,
    data: dict[str, Any],
    settings: Settings,
) -> str:
    """Complete (or, with ``action`` 'defer', save) a task; return what happened."""
    task = instances.get_task(session, task_id)
    request = for_instance(session, task.instance_id)
    if request is not None and task.task_spec in APPROVAL_TASKS:
        decision = "defer" if action == "defer" else data.get("decision", "")
        provisioning.decide(
            session,
            actor,
            task_id,
            decision=decision,
            comment=data.get("comment", "") or "",
            note=data.get("note", "") or "",
            token_model=data.get("token_model") or None,
            settings=settings,
        )
        return _decided(decision, task, request)
    if (
        request is not None
        and action != "defer"
        and task.task_spec in (HARDWARE_DISTRIBUTION, SOFTWARE_DISTRIBUTION)
    ):
        provisioning.distribute(
            session,
            actor,
            task_id,
            serial_number=data.get("serial_number") or None,
            shipping_address=data.get("shipping_address") or None,
            carrier=data.get("carrier") or None,
            tracking_number=data.get("tracking_number") or None,
            delivery_method=data.get("delivery_method") or None,
            settings=settings,
        )
        return f"Request {request.id}: distribution recorded."
    if action == "defer":
        instances.save_task(session, task_id, actor=actor, data=data)
        return f"Saved '{task.name}' without completing it; it stays in the inbox."
    instances.complete_task(session, task_id, actor=actor, data=data, settings=settings)
    return f"Completed '{task.name}' of request {task.instance_id}."


def _decided(decision: str, task: HumanTask, request: ProvisioningRequest) -> str:
    return {
        "approve": f"You approved request {request.id}.",
        "reject": f"You rejected request {request.id}; the requester is told.",
        "cancel": f"You cancelled request {request.id}.",
        "defer": f"Saved your notes on request {request.id}; it stays in the inbox.",
    }.get(decision, f"Completed '{task.name}' of request {request.id}.")
