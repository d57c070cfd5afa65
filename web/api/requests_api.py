"""Provisioning requests over the API: submit, list, show, cancel, and the
approval and distribution steps, all through :mod:`engine.provisioning.requests`.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from sqlalchemy import select

from engine import instances
from engine.provisioning import requests as provisioning
from engine.provisioning.request_models import ProvisioningRequest, RequestStatus

from . import serialize
from .auth import actor
from .errors import field_error
from .v1 import (
    bp,
    capped_text_field,
    database,
    json_body,
    object_field,
    optional_json_body,
    page,
    query_choice,
    settings,
    text_field,
    visible_task,
)

#: fields an API call may send when completing each request step
STEP_FIELDS = {
    provisioning.APPROVE_STEP: ("decision", "comment", "note", "token_model"),
    provisioning.HARDWARE_STEP: (
        "serial_number",
        "shipping_address",
        "carrier",
        "tracking_number",
    ),
    provisioning.SOFTWARE_STEP: ("delivery_method",),
}


def request_json(row: ProvisioningRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "instance_id": row.instance_id,
        "request_type": row.request_type,
        "requester": row.requester,
        "domain_path": row.domain_path,
        "token_class": row.token_class,
        "token_model": row.token_model,
        "old_serial": row.old_serial,
        "group_name": row.group_name,
        "status": row.status,
        "current_step": row.current_step,
        "comment_to_user": row.comment_to_user,
        "outcome": row.outcome,
        "created_at": serialize.iso(row.created_at),
        "updated_at": serialize.iso(row.updated_at),
        "ended_at": serialize.iso(row.ended_at),
    }


@bp.get("/request-types")
def request_types():
    """List the kinds of request and the form fields each needs."""
    return jsonify(
        {
            "items": [
                {
                    "key": t.key,
                    "label": t.label,
                    "fields": [
                        {
                            "id": f.id,
                            "label": f.label,
                            "required": f.required,
                            "help": f.help,
                            "choices": [
                                {"id": value, "name": name} for value, name in f.choices
                            ],
                            "max_length": f.max_length,
                        }
                        for f in t.fields
                    ],
                }
                for t in provisioning.REQUEST_TYPES.values()
            ]
        }
    )


@bp.post("/requests")
def submit_request():
    """Submit a request of one type with its form; its process starts at once."""
    body = json_body()
    request_type = text_field(body, "request_type")
    form = object_field(body, "form")
    if request_type not in provisioning.REQUEST_TYPES:
        raise field_error(
            "request_type",
            f"Unknown request type '{request_type}'; the types are "
            f"{', '.join(provisioning.REQUEST_TYPES)}.",
        )
    with database().write() as session:
        row = provisioning.submit_request(
            session,
            actor=actor(),
            request_type=request_type,
            form=form,
            settings=settings(),
        )
        return jsonify(request_json(row)), 201


@bp.get("/requests")
def list_requests():
    """List the caller's requests, or (scope=staff) those of their domains."""
    limit, offset = page()
    scope = query_choice("scope", ("mine", "staff")) or "mine"
    status = query_choice("status", RequestStatus.ALL)
    request_type = query_choice("request_type", tuple(provisioning.REQUEST_TYPES))
    with database().read() as session:
        rows = provisioning.list_requests(
            session,
            actor(),
            mine=scope == "mine",
            status=status,
            request_type=request_type,
            limit=limit,
            offset=offset,
        )
        return jsonify({"items": [request_json(r) for r in rows]})


@bp.get("/requests/<id:request_id>")
def get_request(request_id: int):
    """Show a request: its state, timeline, who holds it, and your tasks on it."""
    with database().read() as session:
        view = provisioning.get_request(session, actor(), request_id)
        return jsonify(
            {
                **request_json(view.request),
                "current_step": view.current_step,
                "timeline": [
                    {
                        "at": serialize.iso(e.at),
                        "actor": e.actor,
                        "action": e.action,
                        "text": e.text,
                        "comment": e.comment,
                        **({"note": e.note} if e.note is not None else {}),
                    }
                    for e in view.timeline
                ],
                "held_by": [
                    {
                        "task_id": h.task_id,
                        "task_name": h.task_name,
                        "assignee": h.assignee,
                        "candidate_groups": list(h.candidate_groups),
                        "domain_path": h.domain_path,
                        "since": serialize.iso(h.since),
                    }
                    for h in view.holders
                ],
                "my_tasks": [serialize.task(t) for t in view.my_tasks],
                "delivery": view.delivery,
                "can_cancel": view.can_cancel,
            }
        )


@bp.post("/requests/<id:request_id>/cancel")
def cancel_request(request_id: int):
    """Cancel a pending request (its requester, or an administrator in scope)."""
    body = optional_json_body()
    reason = capped_text_field(body, "reason", required=False)
    with database().write() as session:
        row = provisioning.cancel_request(session, actor(), request_id, reason)
        return jsonify(request_json(row))


def complete_request_step(session, task_id: str, data: dict[str, Any]):
    """Complete a step of a provisioning request through its own rules.

    Approval and distribution have checks beyond their forms (a corrected
    token model stays in its class, a serial number must be in stock), so
    they go through ``decide`` and ``distribute``; returns None for a task of
    any other kind.
    """
    task = instances.get_task(session, task_id)
    allowed = STEP_FIELDS.get(task.task_spec)
    is_request = session.scalar(
        select(ProvisioningRequest.id).where(
            ProvisioningRequest.instance_id == task.instance_id
        )
    )
    if allowed is None or is_request is None:
        return None
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise field_error(
            unknown[0],
            f"Not a field of this step; its fields are {', '.join(allowed)}.",
        )
    values = {k: v for k, v in data.items() if v is not None}
    for name, value in values.items():
        if not isinstance(value, str):
            raise field_error(name, "Give a text value.")
    if task.task_spec == provisioning.APPROVE_STEP:
        return provisioning.decide(
            session,
            actor(),
            task_id,
            decision=values.get("decision", ""),
            comment=values.get("comment", ""),
            note=values.get("note", ""),
            token_model=values.get("token_model"),
            settings=settings(),
        )
    return provisioning.distribute(
        session, actor(), task_id, **values, settings=settings()
    )


@bp.post("/tasks/<task_id>/complete")
def complete_task(task_id: str):
    """Complete a task with its form's values and run the request on.

    For an approval step, ``decision`` ``defer`` saves the comment and note
    and leaves the task open.
    """
    body = json_body()
    data = object_field(body, "data")
    with database().write() as session:
        visible_task(session, task_id)
        row = complete_request_step(session, task_id, data)
        if row is None:
            instances.complete_task(
                session, task_id, actor=actor(), data=data, settings=settings()
            )
        task = instances.get_task(session, task_id)
        instance = instances.get_instance(session, task.instance_id)
        return jsonify(
            {
                "task": serialize.task(task),
                "instance": serialize.instance(instance),
                "request": request_json(row) if row is not None else None,
            }
        )
