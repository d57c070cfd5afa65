"""JSON forms of the engine's objects, as the OpenAPI document describes them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from engine.deployments import DeploymentResult
from engine.instances import InstanceView
from engine.models import (
    Deployment,
    HistoryEntry,
    HumanTask,
    Incident,
    ProcessDefinition,
    ProcessInstance,
    Timer,
)


def iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def task(row: HumanTask) -> dict[str, Any]:
    return {
        "id": row.id,
        "instance_id": row.instance_id,
        "process_key": row.process_key,
        "task_spec": row.task_spec,
        "name": row.name,
        "lane": row.lane,
        "domain_path": row.domain_path,
        "assignee": row.assignee,
        "candidate_groups": row.candidate_groups,
        "candidate_users": row.candidate_users,
        "status": row.status,
        "form": row.form or {},
        "saved_data": row.saved_data or {},
        "created_at": iso(row.created_at),
        "due_at": iso(row.due_at),
        "completed_at": iso(row.completed_at),
        "completed_by": row.completed_by,
    }


def instance(row: ProcessInstance) -> dict[str, Any]:
    return {
        "id": row.id,
        "process_key": row.process_key,
        "version": row.definition.version,
        "business_key": row.business_key,
        "initiator": row.initiator,
        "domain_path": row.domain_path,
        "status": row.status,
        "end_event": row.end_event,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "ended_at": iso(row.ended_at),
        "cancel_reason": row.cancel_reason,
        "cancelled_by": row.cancelled_by,
    }


def history(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "element_id": entry.element_id,
        "task_id": entry.task_id,
        "message": entry.message,
    }


def incident(row: Incident) -> dict[str, Any]:
    return {
        "id": row.id,
        "instance_id": row.instance_id,
        "element_id": row.element_id,
        "error_type": row.error_type,
        "message": row.message,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "resolved_at": iso(row.resolved_at),
        "resolved_by": row.resolved_by,
    }


def timer(row: Timer) -> dict[str, Any]:
    return {
        "element_id": row.element_id,
        "due_at": iso(row.due_at),
        "status": row.status,
        "fired_at": iso(row.fired_at),
    }


def instance_view(view: InstanceView) -> dict[str, Any]:
    return {
        **instance(view.instance),
        "open_tasks": [task(t) for t in view.open_tasks],
        "history": [history(h) for h in view.history],
        "incidents": [incident(i) for i in view.incidents],
        "timers": [timer(t) for t in view.timers],
        "data": view.data,
        "current_elements": view.current_elements,
    }


def definition(row: ProcessDefinition) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "version": row.version,
        "name": row.name,
        "deployment_id": row.deployment_id,
        "resource": row.file.filename,
        "created_at": iso(row.created_at),
    }


def deployment(row: Deployment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "source": row.source,
        "deployed_by": row.deployed_by,
        "deployed_at": iso(row.deployed_at),
        "files": [f.filename for f in row.files],
    }


def deployment_result(result: DeploymentResult) -> dict[str, Any]:
    return {
        "deployment_id": result.deployment_id,
        "changed": result.changed,
        "items": [
            {
                "kind": item.kind,
                "key": item.key,
                "version": item.version,
                "status": item.status,
            }
            for item in result.items
        ],
    }
