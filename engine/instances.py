"""Process instances: start, complete tasks, cancel, timers and incidents.

Every function that changes an instance follows the same order, so that two
processes never advance one instance at the same time and a step is either
stored whole or not at all:

1. lock the instance row (:func:`lock_instance`);
2. check the caller may act and the data is valid, *before* touching state;
3. restore the workflow, apply the change, run engine steps;
4. write state, task rows, timers and history in the caller's transaction.

A failing script, decision or service handler does not raise out of here: the
work done before it is kept, the instance is put into an incident naming the
element and the error, and :func:`retry_incident` runs it again after a fix.

A product layer that owns some processes plugs its own rules into step 2
without the core knowing them: :func:`guard_start` refuses starts of a
process that must begin another way (a provisioning request starts only with
its request row), and :func:`check_completion` checks a task's data beyond
its form (a serial number must be an available token of the requested model).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from . import events, services
from .config import Settings
from .deployments import latest_definition, load_spec
from .errors import (
    InstanceNotActive,
    NotFound,
    PermissionDenied,
    ProvisioningError,
    TaskAlreadyCompleted,
    ValidationFailed,
)
from .identity import ADMINISTRATOR, SYSTEM_ACTOR, Actor, role_of_lane
from .models import (
    HistoryEntry,
    HumanTask,
    Incident,
    IncidentStatus,
    InstanceStatus,
    ProcessDefinition,
    ProcessInstance,
    TaskCandidate,
    TaskStatus,
    Timer,
    TimerStatus,
    utcnow,
)
from .scripting import RestrictedScriptEngine
from .spiff import SERIALIZER_VERSION, RoutedUserTask, dump_state, load_workflow

logger = logging.getLogger(__name__)

_script_engine = RestrictedScriptEngine()
_default_settings: Settings | None = None


def _settings(settings: Settings | None) -> Settings:
    global _default_settings
    if settings is not None:
        return settings
    if _default_settings is None:
        _default_settings = Settings.from_env()
    return _default_settings


# -- rules of the product layer -----------------------------------------------

#: ``guard(session, key, actor, variables)`` raises to refuse a start.
StartGuard = Callable[[Session, str, Actor, dict[str, Any]], None]
#: ``check(session, actor, task, instance, values)`` raises to refuse a completion.
CompletionCheck = Callable[
    [Session, Actor, HumanTask, ProcessInstance, dict[str, Any]], None
]

_start_guards: dict[str, StartGuard] = {}
_completion_checks: dict[tuple[str, str], CompletionCheck] = {}


def guard_start(key: str, guard: StartGuard) -> StartGuard:
    """Have ``guard`` approve every start of process ``key`` before it happens.

    Every entry point (the CLI, the Camunda REST API, the console) starts
    through :func:`start_instance`, so a guard holds for all of them. The
    guard raises a :class:`ProvisioningError` that says how to start the
    process instead; nothing is written then. One guard a process key; a
    second registration replaces the first.

    :returns: ``guard``, so that this can be used as a decorator's body.
    """
    _start_guards[key] = guard
    return guard


def unguard_start(key: str) -> None:
    """Let process ``key`` start without a guard again."""
    _start_guards.pop(key, None)


def check_completion(key: str, task_spec: str, check: CompletionCheck) -> None:
    """Run ``check`` on the data of task ``task_spec`` of process ``key``.

    :func:`complete_task` calls it after the form's own validation and before
    the workflow moves, so a refusal (a :class:`ValidationFailed` naming the
    field) leaves the task open and nothing written. One check a task; a
    second registration replaces the first.
    """
    _completion_checks[(key, task_spec)] = check


def uncheck_completion(key: str, task_spec: str) -> None:
    """Complete task ``task_spec`` of process ``key`` with its form checks only."""
    _completion_checks.pop((key, task_spec), None)


# -- starting ---------------------------------------------------------------

#: the most characters a business key may have (the column's length)
BUSINESS_KEY_MAX = ProcessInstance.__table__.c.business_key.type.length


def start_instance(
    session: Session,
    key: str,
    *,
    actor: Actor,
    business_key: str | None = None,
    variables: dict[str, Any] | None = None,
    domain_path: str | None = None,
    settings: Settings | None = None,
) -> ProcessInstance:
    """Start the latest version of process ``key`` and run it to its first wait.

    :param actor: who starts it; recorded as the initiator.
    :param variables: the start data, visible to every task.
    :param domain_path: the security domain the request belongs to (default:
        the initiator's), which decides who may work its tasks.
    :returns: the new instance, flushed; the caller's transaction commits it.
    :raises NotFound: no process ``key`` is deployed.
    :raises ValidationFailed: the business key is too long.
    :raises ProvisioningError: the guard of process ``key`` refused the start
        (see :func:`guard_start`); a :class:`PermissionDenied` for requests.
    """
    if business_key is not None and len(business_key) > BUSINESS_KEY_MAX:
        raise ValidationFailed(
            f"The instance of process '{key}' was not started.",
            {
                "business_key": f"Business key must be at most {BUSINESS_KEY_MAX} "
                f"characters, not {len(business_key)}; give a shorter reference."
            },
        )
    definition = latest_definition(session, key)
    guard = _start_guards.get(definition.key)
    if guard is not None:
        guard(session, definition.key, actor, variables or {})
    spec, subprocess_specs = load_spec(session, definition)
    workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=_script_engine)
    start = workflow.task_tree
    start.data.update(copy.deepcopy(variables or {}))

    instance = ProcessInstance(
        definition_id=definition.id,
        process_key=definition.key,
        business_key=business_key,
        initiator=actor.username,
        domain_path=actor.domain_path if domain_path is None else domain_path,
        status=InstanceStatus.RUNNING,
        state="",
        serializer_version=SERIALIZER_VERSION,
    )
    session.add(instance)
    session.flush()
    instance.definition = definition
    _history(
        session,
        instance,
        actor.username,
        "instance_started",
        f"Started {definition.name} (version {definition.version})",
        data={"business_key": business_key, "variables": variables or {}},
    )
    logger.info(
        "Started instance %s of %s v%s",
        instance.id,
        key,
        definition.version,
        extra={"instance_id": instance.id},
    )
    _advance(session, instance, workflow, actor, _settings(settings), open_rows=[])
    return instance


# -- locking and loading ----------------------------------------------------


def lock_instance(session: Session, instance_id: int) -> ProcessInstance:
    """Return the instance, locked against other writers until the transaction ends.

    On PostgreSQL this is a row lock. On SQLite the write transaction opened by
    :meth:`engine.db.Database.write` already holds the database's write lock.
    """
    instance = session.scalars(
        select(ProcessInstance)
        .where(ProcessInstance.id == instance_id)
        .with_for_update(of=ProcessInstance)
        .execution_options(populate_existing=True)
    ).first()
    if instance is None:
        raise NotFound(f"Instance {instance_id} does not exist; check the number.")
    return instance


def _label(instance: ProcessInstance, *, capital: bool = False) -> str:
    """Name an instance in messages the way its users know it.

    The business key (a provisioning request's "request-12") when there is
    one; the instance id means nothing to a requester whose request number
    differs from it.
    """
    if instance.business_key:
        return instance.business_key
    return f"{'Instance' if capital else 'instance'} {instance.id}"


def get_instance(session: Session, instance_id: int) -> ProcessInstance:
    instance = session.get(ProcessInstance, instance_id)
    if instance is None:
        raise NotFound(f"Instance {instance_id} does not exist; check the number.")
    return instance


def load(session: Session, instance: ProcessInstance) -> BpmnWorkflow:
    """Restore an instance's workflow on the spec version it started on."""
    spec, subprocess_specs = load_spec(session, instance.definition)
    return load_workflow(instance.state, spec, subprocess_specs, _script_engine)


# -- completing tasks -------------------------------------------------------


def get_task(session: Session, task_id: str) -> HumanTask:
    task = session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist; reload your task list.")
    return task


def _locked_task(
    session: Session, task_id: str
) -> tuple[HumanTask, ProcessInstance, list[HumanTask]]:
    """Lock the task's instance; return the task, the instance and all its task rows.

    The rows are read after the lock, so they show what the last writer left.
    """
    instance = session.scalars(
        select(ProcessInstance)
        .join(HumanTask, HumanTask.instance_id == ProcessInstance.id)
        .where(HumanTask.id == task_id)
        .with_for_update(of=ProcessInstance)
        .execution_options(populate_existing=True)
    ).first()
    if instance is None:
        raise NotFound(f"Task {task_id} does not exist; reload your task list.")
    rows = list(
        session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id == instance.id)
            .execution_options(populate_existing=True)
        )
    )
    task = next(r for r in rows if r.id == task_id)
    if task.status == TaskStatus.COMPLETED:
        raise TaskAlreadyCompleted(
            f"Task '{task.name}' of {_label(instance)} was already completed by "
            f"{task.completed_by} at {task.completed_at:%Y-%m-%d %H:%M:%S} UTC; "
            "nothing was changed. Reload the request to see its current state."
        )
    if task.status != TaskStatus.OPEN or instance.status not in InstanceStatus.ACTIVE:
        raise InstanceNotActive(
            f"Task '{task.name}' of {_label(instance)} is no longer open: the "
            f"request is {instance.status}. Nothing was changed."
        )
    return task, instance, rows


def lock_task(session: Session, task_id: str) -> tuple[HumanTask, ProcessInstance]:
    """Lock an open task's instance for this transaction and return both.

    Callers that check their own rules before :func:`complete_task` (say, that
    a serial number is still available) lock first, so that a concurrent
    completion shows as :class:`TaskAlreadyCompleted`, not as their rule.

    :raises NotFound, TaskAlreadyCompleted, InstanceNotActive: as
        :func:`complete_task`.
    """
    task, instance, _rows = _locked_task(session, task_id)
    return task, instance


def complete_task(
    session: Session,
    task_id: str,
    *,
    actor: Actor,
    data: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> ProcessInstance:
    """Complete an open user task with form data and run the instance on.

    :param data: values of the task's form fields; other keys are refused.
    :returns: the instance after the step.
    :raises NotFound: the task does not exist.
    :raises TaskAlreadyCompleted: someone completed it first (says who and when).
    :raises InstanceNotActive: the task was cancelled or the request ended.
    :raises PermissionDenied: ``actor`` may not work this task.
    :raises ValidationFailed: the data does not fit the form, or the check
        registered for the task (:func:`check_completion`) refused it; one
        error per field.
    """
    task, instance, rows = _locked_task(session, task_id)
    check_may_work(session, actor, task, instance, rows)
    values = _checked_values(session, actor, task, instance, data or {})

    workflow = load(session, instance)
    spiff_task = workflow.get_task_from_id(UUID(task.id))
    if spiff_task is None or spiff_task.state != TaskState.READY:
        raise InstanceNotActive(
            f"Task '{task.name}' of {_label(instance)} is not ready in the "
            "workflow any more; reload the request."
        )
    spiff_task.data.update(values)
    open_rows = [r for r in rows if r.status == TaskStatus.OPEN]
    try:
        spiff_task.run()
    except SpiffWorkflowException as err:
        _open_incident(session, instance, workflow, err, actor)

    task.status = TaskStatus.COMPLETED
    task.completed_by = actor.username
    task.completed_at = utcnow()
    task.saved_data = {}
    _history(
        session,
        instance,
        actor.username,
        "task_completed",
        f"Completed '{task.name}'",
        task=task,
        data=values,
    )
    logger.info(
        "Completed task %s (%s) of instance %s by %s",
        task.id,
        task.task_spec,
        instance.id,
        actor.username,
        extra={"instance_id": instance.id, "task_id": task.id},
    )
    if instance.status != InstanceStatus.INCIDENT:
        _advance(session, instance, workflow, actor, _settings(settings), open_rows)
    else:
        _persist(session, instance, workflow, actor, open_rows)
    return instance


def _checked_values(session, actor, task, instance, data) -> dict[str, Any]:
    """Validate ``data`` by the task's form and its completion check, if any.

    Both run even when the form already failed, so that one refusal lists
    every bad field; the check's message wins, as it knows the task.
    """
    check = _completion_checks.get((instance.process_key, task.task_spec))
    errors: dict[str, str] = {}
    message = ""
    try:
        values = validate_form(task.form, data)
    except ValidationFailed as failed:
        if check is None:
            raise
        errors, message, values = failed.field_errors, failed.message, dict(data)

    if check is not None:
        try:
            check(session, actor, task, instance, values)
        except ValidationFailed as failed:
            errors = {**errors, **failed.field_errors}
            message = failed.message
    if errors:
        raise ValidationFailed(message, errors)

    return values


def save_task(
    session: Session, task_id: str, *, actor: Actor, data: dict[str, Any]
) -> HumanTask:
    """Save form data on an open task without completing it (defer).

    Only fields of the form are kept; required fields may still be empty.
    :raises PermissionDenied, ValidationFailed, TaskAlreadyCompleted: as
        :func:`complete_task`.
    """
    task, instance, rows = _locked_task(session, task_id)
    check_may_work(session, actor, task, instance, rows)
    values = validate_form(task.form, data, partial=True)
    task.saved_data = values
    _history(
        session,
        instance,
        actor.username,
        "task_saved",
        f"Saved '{task.name}' without completing it",
        task=task,
        data=values,
    )
    return task


def check_may_work(
    session: Session,
    actor: Actor,
    task: HumanTask,
    instance: ProcessInstance,
    rows: list[HumanTask] | None = None,
) -> None:
    """Raise :class:`PermissionDenied` unless ``actor`` may work ``task``.

    Separation of duties is enforced here, not only in the inbox: the
    initiator never works a task of their own request (unless named on it),
    and nobody works two tasks of the same step of one request.
    """
    who = actor.username
    named = who == task.assignee or who in task.candidate_users
    if who == instance.initiator and not named:
        raise PermissionDenied(
            f"You started {_label(instance)}, so you may not work its task "
            f"'{task.name}': separation of duties requires someone else to do it."
        )
    if rows is None:
        rows = list(
            session.scalars(
                select(HumanTask).where(HumanTask.instance_id == instance.id)
            )
        )
    earlier = any(
        r.task_spec == task.task_spec and r.completed_by == who and r.id != task.id
        for r in rows
    )
    if earlier and not named:
        raise PermissionDenied(
            f"You already completed an earlier '{task.name}' step of "
            f"{_label(instance)}; a different person must take this step."
        )
    if task.assignee and task.assignee != who:
        raise PermissionDenied(
            f"Task '{task.name}' of {_label(instance)} is assigned to "
            f"{task.assignee}; ask them or an administrator to unassign it."
        )
    if named:
        return
    groups = task.candidate_groups or [g for g in [role_of_lane(task.lane)] if g]
    if any(actor.has_role(g, task.domain_path) for g in groups):
        return
    needed = " or ".join(groups) or "a named candidate"
    raise PermissionDenied(
        f"You may not work task '{task.name}' of {_label(instance)}: it needs "
        f"the {needed} role for security domain '{task.domain_path}', which you "
        "do not hold there."
    )


_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0", ""}


def validate_form(
    form: dict[str, Any], data: dict[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Check submitted data against a task's form fields and convert the values.

    :returns: the converted values, by field id.
    :raises ValidationFailed: with one message per bad field; unknown fields
        are refused so that a submission cannot set process variables that
        the form does not offer (such as the number of approval steps).
    """
    fields = {f["id"]: f for f in form.get("fields", [])}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in data:
        if key not in fields:
            errors[key] = (
                f"'{key}' is not a field of this task; the fields are: "
                f"{', '.join(fields) or 'none'}."
            )
    for field_id, spec in fields.items():
        label = spec.get("label") or field_id
        validation = {v["name"]: v.get("config") for v in spec.get("validation", [])}
        raw = data.get(field_id)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if "required" in validation and not partial:
                errors[field_id] = f"{label} is required."
            elif field_id in data:
                values[field_id] = None if spec["type"] != "string" else ""
            continue
        try:
            values[field_id] = _convert(spec, raw, validation)
        except ValueError as err:
            errors[field_id] = f"{label} {err}"
    if errors:
        raise ValidationFailed(
            "The form has errors; correct them and submit again.", errors
        )
    return values


def _convert(spec: dict[str, Any], raw: Any, validation: dict[str, Any]) -> Any:
    kind = spec.get("type") or "string"
    if kind == "enum":
        options = [o["id"] for o in spec.get("options", [])]
        if str(raw) not in options:
            raise ValueError(f"must be one of: {', '.join(options)}.")
        return str(raw)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false.")
    if kind == "long":
        if isinstance(raw, bool):
            raise ValueError("must be a whole number.")
        try:
            number = int(str(raw).strip())
        except ValueError:
            raise ValueError("must be a whole number.") from None
        if "min" in validation and number < int(validation["min"]):
            raise ValueError(f"must be at least {validation['min']}.")
        if "max" in validation and number > int(validation["max"]):
            raise ValueError(f"must be at most {validation['max']}.")
        return number
    if kind == "date":
        try:
            return date.fromisoformat(str(raw).strip()).isoformat()
        except ValueError:
            raise ValueError("must be a date written as YYYY-MM-DD.") from None
    text = str(raw)
    if "minlength" in validation and len(text) < int(validation["minlength"]):
        raise ValueError(f"must be at least {validation['minlength']} characters.")
    maxlength = int(validation.get("maxlength") or 4000)
    if len(text) > maxlength:
        raise ValueError(f"must be at most {maxlength} characters.")
    return text


# -- claiming ---------------------------------------------------------------


def claim_task(session: Session, task_id: str, *, actor: Actor) -> HumanTask:
    """Assign an open task to ``actor``, who must be allowed to work it.

    Claiming a task one holds already changes nothing and records nothing, so
    a double click leaves one line in the history.
    """
    task, instance, rows = _locked_task(session, task_id)
    check_may_work(session, actor, task, instance, rows)
    if task.assignee == actor.username:
        return task

    task.assignee = actor.username
    _history(
        session,
        instance,
        actor.username,
        "task_claimed",
        f"Claimed '{task.name}'",
        task=task,
    )
    return task


def unclaim_task(session: Session, task_id: str, *, actor: Actor) -> HumanTask:
    """Put an assigned task back in its queue (the assignee or an administrator)."""
    task, instance, rows = _locked_task(session, task_id)
    if task.assignee != actor.username and not actor.has_role(
        ADMINISTRATOR, instance.domain_path
    ):
        raise PermissionDenied(
            f"Task '{task.name}' is assigned to {task.assignee or 'nobody'}; only "
            "the assignee or an administrator can put it back in the queue."
        )
    task.assignee = None
    _history(
        session,
        instance,
        actor.username,
        "task_unclaimed",
        f"Put '{task.name}' back in the queue",
        task=task,
    )
    return task


def assign_task(
    session: Session, task_id: str, *, actor: Actor, assignee: Actor
) -> HumanTask:
    """Assign an open task to ``assignee``, who must be allowed to work it."""
    task, instance, rows = _locked_task(session, task_id)
    if not (
        actor.has_role(ADMINISTRATOR, instance.domain_path)
        or any(actor.has_role(g, task.domain_path) for g in task.candidate_groups)
    ):
        raise PermissionDenied(
            f"You may not assign task '{task.name}' of {_label(instance)}; only "
            "members of its queue in scope or administrators can."
        )
    previous, task.assignee = task.assignee, None
    try:
        check_may_work(session, assignee, task, instance)
    finally:
        task.assignee = previous
    task.assignee = assignee.username
    _history(
        session,
        instance,
        actor.username,
        "task_assigned",
        f"Assigned '{task.name}' to {assignee.username}",
        task=task,
    )
    return task


# -- cancelling -------------------------------------------------------------


def cancel_instance(
    session: Session, instance_id: int, *, actor: Actor, reason: str
) -> ProcessInstance:
    """Cancel a running instance and every open task and timer of it.

    :raises PermissionDenied: ``actor`` is neither the initiator, an
        administrator in scope, nor the system.
    :raises InstanceNotActive: the instance has already ended.
    """
    instance = lock_instance(session, instance_id)
    allowed = actor.username in (
        instance.initiator,
        SYSTEM_ACTOR.username,
    ) or actor.has_role(ADMINISTRATOR, instance.domain_path)
    if not allowed:
        raise PermissionDenied(
            f"You may not cancel {_label(instance)}; only its requester or an "
            "administrator of its security domain can."
        )
    if instance.status not in InstanceStatus.ACTIVE:
        raise InstanceNotActive(
            f"{_label(instance, capital=True)} is already {instance.status}; "
            "nothing to cancel."
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "Give a reason for cancelling.", {"reason": "A reason is required."}
        )
    workflow = load(session, instance)
    open_rows = _open_rows(session, instance)
    workflow.cancel()
    instance.status = InstanceStatus.CANCELLED
    instance.cancel_reason = reason
    instance.cancelled_by = actor.username
    instance.ended_at = utcnow()
    _resolve_incidents(session, instance, actor, "cancelled")
    _persist(session, instance, workflow, actor, open_rows)
    _history(
        session,
        instance,
        actor.username,
        "instance_cancelled",
        f"Cancelled: {reason}",
        data={"reason": reason},
    )
    logger.info(
        "Cancelled instance %s by %s",
        instance.id,
        actor.username,
        extra={"instance_id": instance.id},
    )
    return instance


# -- incidents --------------------------------------------------------------


def retry_incident(
    session: Session,
    instance_id: int,
    *,
    actor: Actor,
    settings: Settings | None = None,
) -> ProcessInstance:
    """Run the failed step of an instance in incident again.

    The step runs on behalf of ``actor``, so a service handler acts with their
    rights: only an administrator of the instance's security domain, or the
    system (the worker's automatic retries), may retry.

    :raises PermissionDenied: ``actor`` is neither.
    :raises InstanceNotActive: the instance is not in an incident.
    """
    instance = lock_instance(session, instance_id)
    if actor.username != SYSTEM_ACTOR.username and not actor.has_role(
        ADMINISTRATOR, instance.domain_path
    ):
        raise PermissionDenied(
            f"You may not retry the failed step of {_label(instance)}; only an "
            f"administrator of security domain '{instance.domain_path}' can, "
            "once the cause is fixed. Nothing was changed."
        )
    if instance.status != InstanceStatus.INCIDENT:
        raise InstanceNotActive(
            f"{_label(instance, capital=True)} is {instance.status}, not in an "
            "incident; "
            "there is nothing to retry."
        )
    workflow = load(session, instance)
    for failed in workflow.get_tasks(state=TaskState.ERROR):
        # Start the step again from the data it had before it failed.
        failed.data = copy.deepcopy(failed.parent.data) if failed.parent else {}
        failed._set_state(TaskState.READY)
    _resolve_incidents(session, instance, actor, "retried")
    instance.status = InstanceStatus.RUNNING
    _history(
        session, instance, actor.username, "incident_retried", "Retried the failed step"
    )
    _advance(
        session,
        instance,
        workflow,
        actor,
        _settings(settings),
        _open_rows(session, instance),
    )
    return instance


def _resolve_incidents(session, instance, actor, how: str) -> None:
    session.execute(
        update(Incident)
        .where(
            Incident.instance_id == instance.id, Incident.status == IncidentStatus.OPEN
        )
        .values(
            status=IncidentStatus.RESOLVED,
            resolved_at=utcnow(),
            resolved_by=f"{actor.username} ({how})",
        )
    )


def _open_incident(session, instance, workflow, err: Exception, actor) -> None:
    element_id = _failed_element(workflow, err)
    message = _describe_error(err)
    previous = session.scalar(
        select(Incident)
        .where(Incident.instance_id == instance.id)
        .where(Incident.element_id == element_id)
        .order_by(Incident.id.desc())
        .limit(1)
    )
    attempts = previous.attempts + 1 if previous is not None else 1
    session.add(
        Incident(
            instance_id=instance.id,
            element_id=element_id,
            error_type=type(err).__name__,
            message=message,
            attempts=attempts,
        )
    )
    instance.status = InstanceStatus.INCIDENT
    _history(
        session,
        instance,
        actor.username,
        "incident_opened",
        f"Step '{element_id}' failed: {message}",
        element_id=element_id,
    )
    logger.warning(
        "Instance %s stopped with an incident at %s: %s",
        instance.id,
        element_id,
        message,
        extra={"instance_id": instance.id},
    )


def _failed_element(workflow, err: Exception) -> str | None:
    """Return the id of the element that failed, as precisely as known.

    A task whose own code failed is in ERROR state. An expression evaluated
    around a task (a multi-instance cardinality, a gateway condition) leaves
    no task in ERROR, but the exception names the task or its spec; failing
    that, the task that ran last is the one to blame.
    """
    failed = workflow.get_tasks(state=TaskState.ERROR)
    if failed:
        return failed[0].task_spec.bpmn_id
    task = getattr(err, "task", None)
    spec = getattr(task, "task_spec", None) or getattr(err, "task_spec", None)
    if getattr(spec, "bpmn_id", None):
        return spec.bpmn_id
    running = [
        t
        for t in workflow.get_tasks(state=TaskState.STARTED | TaskState.READY)
        if getattr(t.task_spec, "bpmn_id", None) and not t.task_spec.manual
    ]
    if running:
        return max(running, key=lambda t: t.last_state_change).task_spec.bpmn_id
    return None


def _describe_error(err: Exception) -> str:
    if isinstance(err, ProvisioningError):
        return str(err)
    inner = getattr(err, "error", None) or err
    if isinstance(err, SpiffWorkflowException):
        text = str(err)
        notes = [n for n in getattr(err, "notes", []) or [] if n]
        if notes:
            text += " (" + "; ".join(notes) + ")"
        if isinstance(inner, ProvisioningError) and str(inner) not in text:
            text += f": {inner}"
        return " ".join(text.split())
    return f"{type(err).__name__}: {err}"


# -- timers -----------------------------------------------------------------


def due_timers(
    session: Session,
    now: datetime | None = None,
    limit: int = 100,
    *,
    exclude: Iterable[int] = (),
) -> list[Timer]:
    """Return waiting timers that are due, of running instances, oldest first.

    Timers of an instance in an incident wait until it runs again, so they are
    left out here; else they would crowd the due timers of other instances
    out of the ``limit``.

    :param exclude: timer ids to leave out, such as those the worker put off
        after they failed.
    """
    query = (
        select(Timer)
        .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
        .where(
            Timer.status == TimerStatus.WAITING,
            Timer.due_at <= (now or utcnow()),
            ProcessInstance.status == InstanceStatus.RUNNING,
        )
    )
    exclude = list(exclude)
    if exclude:
        query = query.where(Timer.id.not_in(exclude))
    return list(session.scalars(query.order_by(Timer.due_at).limit(limit)))


def fire_timer(
    session: Session, timer_id: int, *, settings: Settings | None = None
) -> bool:
    """Wake the instance of a due timer; return whether the timer fired.

    Runs in the caller's write transaction; the timer row is updated with the
    instance state, so a timer fires once even if the worker stops right after.
    """
    instance_id = session.scalar(select(Timer.instance_id).where(Timer.id == timer_id))
    if instance_id is None:
        return False
    instance = lock_instance(session, instance_id)
    timer = session.scalars(
        select(Timer)
        .where(Timer.id == timer_id)
        .execution_options(populate_existing=True)
    ).one()
    if timer.status != TimerStatus.WAITING or instance.status != InstanceStatus.RUNNING:
        return False
    workflow = load(session, instance)
    open_rows = _open_rows(session, instance)
    workflow.refresh_timers()
    _advance(session, instance, workflow, SYSTEM_ACTOR, _settings(settings), open_rows)
    session.flush()
    return timer.status == TimerStatus.FIRED


# -- persisting -------------------------------------------------------------


def _open_rows(session: Session, instance: ProcessInstance) -> list[HumanTask]:
    return list(
        session.scalars(
            select(HumanTask).where(
                HumanTask.instance_id == instance.id,
                HumanTask.status == TaskStatus.OPEN,
            )
        )
    )


def _advance(session, instance, workflow, actor, settings, open_rows) -> None:
    with services.bound(
        session=session, instance=instance, settings=settings, actor=actor.username
    ):
        try:
            workflow.do_engine_steps()
        except Exception as err:  # noqa: BLE001 - every failure becomes an incident
            _open_incident(session, instance, workflow, err, actor)
    _persist(session, instance, workflow, actor, open_rows)


def _persist(session, instance, workflow, actor, open_rows) -> None:
    now = utcnow()
    ready = {}
    if instance.status in InstanceStatus.ACTIVE:
        for t in workflow.get_tasks(state=TaskState.READY, manual=True):
            ready[str(t.id)] = t
    # Timers first, so that history tells the fired timer before the tasks it
    # cancelled or created.
    _sync_timers(session, instance, workflow, now)
    for row in open_rows:
        if row.status == TaskStatus.OPEN and row.id not in ready:
            row.status = TaskStatus.CANCELLED
            row.completed_at = now
            _history(
                session,
                instance,
                actor.username,
                "task_cancelled",
                f"'{row.name}' is no longer needed",
                task=row,
            )
    known = {row.id for row in open_rows}
    for task_id, spiff_task in ready.items():
        if task_id not in known:
            _create_task_row(session, instance, spiff_task, actor)

    if workflow.completed and instance.status in InstanceStatus.ACTIVE:
        instance.status = InstanceStatus.COMPLETED
        instance.ended_at = now
        instance.end_event = _end_event(workflow)
        _history(
            session,
            instance,
            actor.username,
            "instance_completed",
            f"Ended at '{instance.end_event}'",
            element_id=instance.end_event,
        )
        logger.info(
            "Instance %s ended at %s",
            instance.id,
            instance.end_event,
            extra={"instance_id": instance.id},
        )
    instance.state = dump_state(workflow)
    instance.serializer_version = SERIALIZER_VERSION
    instance.updated_at = now


def _end_event(workflow: BpmnWorkflow) -> str | None:
    ended = [
        t
        for t in workflow.get_tasks(state=TaskState.COMPLETED)
        if isinstance(t.task_spec, EndEvent) and t.workflow is workflow
    ]
    if not ended:
        return None
    return max(ended, key=lambda t: t.last_state_change).task_spec.bpmn_id


_EXPRESSION = re.compile(r"^\$\{\s*(.+?)\s*\}$")


def _resolve(value: str | None, spiff_task) -> str | None:
    """Resolve a Camunda ``${expression}`` routing value against task data."""
    if not value:
        return value
    match = _EXPRESSION.match(value.strip())
    if match is None:
        return value.strip()
    result = _script_engine.evaluate(spiff_task, match.group(1))
    return None if result is None else str(result)


def _due(value: str | None, spiff_task, now: datetime) -> datetime | None:
    value = _resolve(value, spiff_task)
    if not value:
        return None
    if value.startswith("P"):
        duration = TimerEventDefinition.parse_iso_duration(value)
        return now + TimerEventDefinition.get_timedelta_from_start(duration, now)
    due = datetime.fromisoformat(value)
    return due if due.tzinfo else due.replace(tzinfo=UTC)


def _create_task_row(session, instance, spiff_task, actor) -> HumanTask:
    spec = spiff_task.task_spec
    now = utcnow()
    groups, users, assignee, due = [], [], None, None
    form: dict[str, Any] = {"key": "", "fields": []}
    if isinstance(spec, RoutedUserTask):
        groups = [
            g for g in (_resolve(v, spiff_task) for v in spec.candidate_groups) if g
        ]
        users = [
            u for u in (_resolve(v, spiff_task) for v in spec.candidate_users) if u
        ]
        assignee = _resolve(spec.assignee, spiff_task)
        due = _due(spec.due_date, spiff_task, now)
        form = _form_dict(spec.form)
    if not groups and not users and not assignee:
        lane_role = role_of_lane(spec.lane)
        if lane_role:
            groups = [lane_role]
    row = HumanTask(
        id=str(spiff_task.id),
        instance_id=instance.id,
        process_key=instance.process_key,
        task_spec=spec.bpmn_id,
        name=spec.bpmn_name or spec.bpmn_id,
        lane=spec.lane,
        domain_path=instance.domain_path,
        assignee=assignee,
        form=form,
        status=TaskStatus.OPEN,
        created_at=now,
        due_at=due,
        saved_data={},
    )
    row.candidate_groups = groups
    row.candidate_users = users
    row.candidates = [TaskCandidate(kind="group", name=g) for g in groups] + [
        TaskCandidate(kind="user", name=u) for u in users
    ]
    session.add(row)
    _history(
        session,
        instance,
        actor.username,
        "task_created",
        f"'{row.name}' is waiting for {', '.join(groups + users) or assignee}",
        task=row,
    )
    return row


def _form_dict(form) -> dict[str, Any]:
    fields = []
    for f in getattr(form, "fields", []):
        item = {
            "id": f.id,
            "type": f.type or "string",
            "label": f.label or f.id,
            "default_value": f.default_value,
            "validation": [{"name": v.name, "config": v.config} for v in f.validation],
            "properties": [{"id": p.id, "value": p.value} for p in f.properties],
        }
        if f.type == "enum":
            item["options"] = [{"id": o.id, "name": o.name} for o in f.options]
        fields.append(item)
    return {"key": getattr(form, "key", "") or "", "fields": fields}


def _sync_timers(session, instance, workflow, now) -> None:
    """Make the timer rows match the timer events the workflow waits on.

    Timers keep waiting while the instance is in an incident: the failed step
    is retried later and the escalation or timeout still has to come;
    :func:`fire_timer` leaves them alone until the instance runs again. A row
    whose event waits again (a retried step, a cycle) is reused, since a
    timer event task has one row.
    """
    waiting = (
        _waiting_timers(workflow) if instance.status in InstanceStatus.ACTIVE else {}
    )
    rows = (
        {
            r.task_id: r
            for r in session.scalars(
                select(Timer).where(
                    Timer.instance_id == instance.id,
                    or_(
                        Timer.status == TimerStatus.WAITING,
                        Timer.task_id.in_(list(waiting)),
                    ),
                )
            )
        }
        if instance.id is not None and (waiting or _may_have_timers(instance))
        else {}
    )
    for task_id, row in rows.items():
        if task_id in waiting:
            row.element_id, row.due_at = waiting[task_id]
            row.status = TimerStatus.WAITING
            row.fired_at = None
            continue
        if row.status != TimerStatus.WAITING:
            continue
        fired = _timer_fired(workflow, task_id)
        row.status = TimerStatus.FIRED if fired else TimerStatus.CANCELLED
        row.fired_at = now if fired else None
        if fired:
            _history(
                session,
                instance,
                SYSTEM_ACTOR.username,
                "timer_fired",
                f"Timer '{row.element_id}' fired",
                element_id=row.element_id,
            )
    for task_id, (element_id, due) in waiting.items():
        if task_id not in rows:
            session.add(
                Timer(
                    instance_id=instance.id,
                    task_id=task_id,
                    element_id=element_id,
                    due_at=due,
                )
            )


def _waiting_timers(workflow) -> dict[str, tuple[str, datetime]]:
    """Return the timer events the workflow waits on: task id -> (element, due)."""
    waiting: dict[str, tuple[str, datetime]] = {}
    for t in workflow.event_manager.tasks.values():
        definition = getattr(t.task_spec, "event_definition", None)
        if not isinstance(definition, TimerEventDefinition):
            continue
        value = t._get_internal_data("event_value")
        if isinstance(value, dict):
            value = value.get("next")
        if not value:
            continue
        due = datetime.fromisoformat(value)
        waiting[str(t.id)] = (
            t.task_spec.bpmn_id,
            due if due.tzinfo else due.replace(tzinfo=UTC),
        )
    return waiting


def _timer_fired(workflow, task_id: str) -> bool:
    """Tell whether a timer event that no longer waits was reached, not cancelled."""
    try:
        task = workflow.get_task_from_id(UUID(task_id))
    except SpiffWorkflowException:
        return False
    return task.state in (TaskState.READY, TaskState.STARTED, TaskState.COMPLETED)


def _may_have_timers(instance) -> bool:
    # An instance that has never waited on a timer has no rows to close; this
    # spares the timer query on every step of processes without timers.
    return bool(instance.state) and '"event_value"' in instance.state


def _history(
    session, instance, actor, action, message, *, task=None, element_id=None, data=None
) -> None:
    entry = HistoryEntry(
        instance_id=instance.id,
        task_id=task.id if task is not None else None,
        element_id=element_id or (task.task_spec if task is not None else None),
        actor=actor,
        action=action,
        message=message,
        data=_jsonable(data or {}),
        at=utcnow(),
    )
    session.add(entry)
    events.emit(session, instance, entry, task)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- reading ----------------------------------------------------------------


@dataclass(frozen=True)
class TaskFilter:
    """What an inbox asks for; every field narrows the list further.

    ``due`` is one of ``"overdue"``, ``"today"`` (within a day), ``"week"``
    (within a week) or ``"none"`` (no due date).
    """

    assigned_only: bool = False
    queue: str | None = None
    process_key: str | None = None
    domain_path: str | None = None
    older_than: timedelta | None = None
    due: str | None = None


TASK_ORDERS = ("oldest", "newest", "due", "type")


def _task_query(actor: Actor, where: TaskFilter, now: datetime):
    me = actor.username
    candidate = aliased(TaskCandidate)
    group_clauses = [
        and_(
            candidate.kind == "group",
            candidate.name == role,
            or_(
                HumanTask.domain_path == scope,
                HumanTask.domain_path.startswith(scope + "/", autoescape=True),
            ),
        )
        for role, scope in actor.grants
        if where.queue is None or role == where.queue
    ]
    if where.queue is None:
        group_clauses.append(and_(candidate.kind == "user", candidate.name == me))
    offered = (
        exists().where(candidate.task_id == HumanTask.id, or_(*group_clauses))
        if group_clauses
        else None
    )

    earlier = aliased(HumanTask)
    query = (
        select(HumanTask)
        .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
        .where(HumanTask.status == TaskStatus.OPEN)
        .where(ProcessInstance.initiator != me)
        .where(
            ~exists().where(
                earlier.instance_id == HumanTask.instance_id,
                earlier.task_spec == HumanTask.task_spec,
                earlier.completed_by == me,
            )
        )
    )
    if where.assigned_only or offered is None:
        query = query.where(HumanTask.assignee == me)
    else:
        query = query.where(
            or_(HumanTask.assignee == me, and_(HumanTask.assignee.is_(None), offered))
        )
    if where.process_key:
        query = query.where(HumanTask.process_key == where.process_key)
    if where.domain_path:
        query = query.where(
            or_(
                HumanTask.domain_path == where.domain_path,
                HumanTask.domain_path.startswith(
                    where.domain_path + "/", autoescape=True
                ),
            )
        )
    if where.older_than is not None:
        query = query.where(HumanTask.created_at <= now - where.older_than)
    if where.due == "overdue":
        query = query.where(HumanTask.due_at < now)
    elif where.due in ("today", "week"):
        horizon = now + timedelta(days=1 if where.due == "today" else 7)
        query = query.where(HumanTask.due_at <= horizon)
    elif where.due == "none":
        query = query.where(HumanTask.due_at.is_(None))
    return query


def list_tasks(
    session: Session,
    actor: Actor,
    *,
    assigned_only: bool = False,
    queue: str | None = None,
    process_key: str | None = None,
    where: TaskFilter | None = None,
    order: str = "oldest",
    limit: int = 50,
    offset: int = 0,
) -> list[HumanTask]:
    """Return the open tasks ``actor`` may work, in one query.

    A task is listed when it is assigned to the actor, or unassigned and the
    actor is a candidate user or holds a candidate group's role over the
    request's domain; tasks that separation of duties forbids are left out.

    :param where: filters; ``assigned_only``, ``queue`` and ``process_key``
        are shortcuts for the fields of the same name.
    :param order: one of :data:`TASK_ORDERS`.
    """
    where = where or TaskFilter(
        assigned_only=assigned_only, queue=queue, process_key=process_key
    )
    query = _task_query(actor, where, utcnow())
    if order == "newest":
        query = query.order_by(HumanTask.created_at.desc(), HumanTask.id)
    elif order == "due":
        query = query.order_by(
            HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.created_at
        )
    elif order == "type":
        query = query.order_by(HumanTask.process_key, HumanTask.created_at)
    else:
        query = query.order_by(HumanTask.created_at, HumanTask.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def count_tasks(session: Session, actor: Actor, where: TaskFilter | None = None) -> int:
    """Return how many open tasks :func:`list_tasks` would list, counted in SQL."""
    query = _task_query(actor, where or TaskFilter(), utcnow())
    return session.scalar(select(func.count()).select_from(query.subquery()))


@dataclass
class InstanceView:
    instance: ProcessInstance
    definition: ProcessDefinition
    open_tasks: list[HumanTask]
    history: list[HistoryEntry]
    incidents: list[Incident]
    timers: list[Timer]
    data: dict[str, Any] = field(default_factory=dict)
    completed_elements: list[str] = field(default_factory=list)
    current_elements: list[str] = field(default_factory=list)


def describe_instance(
    session: Session, instance_id: int, *, with_state: bool = True
) -> InstanceView:
    """Return an instance with its open tasks, history, incidents and timers.

    With ``with_state``, also the process data and the element ids passed and
    current, for a diagram view.
    """
    instance = get_instance(session, instance_id)
    view = InstanceView(
        instance=instance,
        definition=instance.definition,
        open_tasks=_open_rows(session, instance),
        history=list(
            session.scalars(
                select(HistoryEntry)
                .where(HistoryEntry.instance_id == instance.id)
                .order_by(HistoryEntry.id)
            )
        ),
        incidents=list(
            session.scalars(
                select(Incident)
                .where(Incident.instance_id == instance.id)
                .order_by(Incident.id)
            )
        ),
        timers=list(
            session.scalars(
                select(Timer).where(Timer.instance_id == instance.id).order_by(Timer.id)
            )
        ),
    )
    if with_state and instance.state:
        workflow = load(session, instance)
        view.data = _jsonable(
            workflow.last_task.data if workflow.last_task else workflow.data
        )
        completed, current = [], []
        for t in workflow.get_tasks():
            bpmn_id = getattr(t.task_spec, "bpmn_id", None)
            if not bpmn_id:
                continue
            if t.state == TaskState.COMPLETED and bpmn_id not in completed:
                completed.append(bpmn_id)
            elif (
                t.state
                in (
                    TaskState.READY,
                    TaskState.WAITING,
                    TaskState.STARTED,
                    TaskState.ERROR,
                )
                and bpmn_id not in current
            ):
                current.append(bpmn_id)
        view.completed_elements = completed
        view.current_elements = current
    return view
