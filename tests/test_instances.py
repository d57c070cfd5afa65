"""Process instances: who may complete a task, form validation, cancel, inbox."""

from __future__ import annotations

import pytest
from helpers_engine import (
    APAC_APPROVER,
    APPROVER,
    DISTRIBUTOR,
    NOBODY,
    REQUEST_DOMAIN,
    REQUESTER,
    SECOND_APPROVER,
    actions,
    complete,
    count,
    deploy,
    open_tasks,
    start,
    task_of,
)
from sqlalchemy import select

from engine import events, instances
from engine.errors import (
    InstanceNotActive,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from engine.models import HistoryEntry, HumanTask, ProcessInstance


@pytest.fixture
def approval(database) -> int:
    """A started approval request of alice, waiting for its first approval."""
    deploy(database, "approval.bpmn")
    return start(database, "approval", domain_path=REQUEST_DOMAIN)


@pytest.fixture
def two_step(database) -> int:
    """A request that needs two approvals of one step, then a named distributor."""
    deploy(database, "engine_two_step.bpmn")
    return start(
        database,
        "engine_two_step",
        variables={"approvals": 0, "distributor": "dave"},
    )


@pytest.fixture
def form_task(database) -> tuple[int, str]:
    deploy(database, "engine_form.bpmn")
    instance_id = start(database, "engine_form")
    return instance_id, task_of(database, instance_id, "fill").id


def refused(database, task_id, actor, data=None) -> str:
    with pytest.raises(PermissionDenied) as err:
        complete(database, task_id, actor, data)
    return str(err.value)


def test_start_records_initiator_business_key_and_first_task(database, approval):
    with database.read() as session:
        instance = session.get(ProcessInstance, approval)
        assert (instance.initiator, instance.domain_path, instance.status) == (
            "alice",
            REQUEST_DOMAIN,
            "running",
        )
    (task,) = open_tasks(database, approval)
    assert (task.task_spec, task.name, task.candidate_groups, task.domain_path) == (
        "approve1",
        "First approval",
        ["request_approver"],
        REQUEST_DOMAIN,
    )
    assert [f["id"] for f in task.form["fields"]] == ["decision", "comment"]
    assert actions(database, approval) == ["instance_started", "task_created"]


def test_a_business_key_longer_than_its_column_is_refused(database):
    deploy(database, "approval.bpmn")

    with pytest.raises(ValidationFailed) as err:
        start(database, "approval", business_key="R" * 201)

    assert err.value.field_errors == {
        "business_key": "Business key must be at most 200 characters, not 201; "
        "give a shorter reference."
    }
    assert str(err.value).startswith(
        "The instance of process 'approval' was not started."
    )
    assert count(database, ProcessInstance) == 0
    assert count(database, HistoryEntry) == 0
    started = start(database, "approval", business_key="R" * 200)
    with database.read() as session:
        assert len(session.get(ProcessInstance, started).business_key) == 200


def test_a_start_guard_refuses_before_anything_is_written(database):
    deploy(database, "approval.bpmn")
    seen = []

    def guard(session, key, actor, variables):
        seen.append((key, actor.username, variables))
        if not variables.get("ticket"):
            raise PermissionDenied(f"Start '{key}' from a ticket.")

    instances.guard_start("approval", guard)
    try:
        with pytest.raises(PermissionDenied) as err:
            start(database, "approval", variables={"ticket": ""})
        allowed = start(database, "approval", variables={"ticket": "T-1"})
    finally:
        instances.unguard_start("approval")

    assert str(err.value) == "Start 'approval' from a ticket."
    assert seen == [
        ("approval", "alice", {"ticket": ""}),
        ("approval", "alice", {"ticket": "T-1"}),
    ]
    with database.read() as session:
        assert session.scalars(select(ProcessInstance.id)).all() == [allowed]
    assert start(database, "approval") != allowed


def test_a_completion_check_refuses_before_the_workflow_moves(database, form_task):
    instance_id, task_id = form_task

    def check(session, actor, task, instance, values):
        if values["kind"] == "hardware" and not values.get("quantity"):
            raise ValidationFailed(
                "Not without a quantity.", {"quantity": "Say how many."}
            )

    instances.check_completion("engine_form", "fill", check)
    try:
        with pytest.raises(ValidationFailed) as err:
            complete(database, task_id, APPROVER, {"title": "T", "kind": "hardware"})
    finally:
        instances.uncheck_completion("engine_form", "fill")

    assert err.value.field_errors == {"quantity": "Say how many."}
    assert [t.id for t in open_tasks(database, instance_id)] == [task_id]
    assert actions(database, instance_id) == ["instance_started", "task_created"]


def test_allowed_user_completes_and_the_instance_runs_on(database, approval):
    task = task_of(database, approval, "approve1")

    status = complete(database, task.id, APPROVER, {"decision": "approve"})

    assert status == "running"
    assert [t.task_spec for t in open_tasks(database, approval)] == ["distribute"]
    with database.read() as session:
        done = session.get(HumanTask, task.id)
        assert (done.status, done.completed_by) == ("completed", "bob")
        entry = session.scalars(
            select(HistoryEntry).where(HistoryEntry.action == "task_completed")
        ).one()
        assert (entry.actor, entry.task_id, entry.data) == (
            "bob",
            task.id,
            {"decision": "approve"},
        )


def test_whole_request_ends_at_its_end_event(database, approval):
    complete(
        database,
        task_of(database, approval, "approve1").id,
        APPROVER,
        {"decision": "approve"},
    )
    status = complete(
        database,
        task_of(database, approval, "distribute").id,
        DISTRIBUTOR,
        {"serial_number": "SN-1", "quantity": "2"},
    )

    assert status == "completed"
    with database.read() as session:
        instance = session.get(ProcessInstance, approval)
        assert (instance.end_event, instance.ended_at is not None) == ("done", True)
        view = instances.describe_instance(session, approval)
        assert view.data["quantity"] == 2
    assert actions(database, approval)[-2:] == ["task_completed", "instance_completed"]


def test_rejection_ends_at_the_rejected_end_event(database, approval):
    complete(
        database,
        task_of(database, approval, "approve1").id,
        APPROVER,
        {"decision": "reject"},
    )

    with database.read() as session:
        instance = session.get(ProcessInstance, approval)
        assert (instance.status, instance.end_event) == ("completed", "rejected")


def test_user_without_the_role_is_refused(database, approval):
    task = task_of(database, approval, "approve1")

    assert refused(database, task.id, NOBODY, {"decision": "approve"}) == (
        f"You may not work task 'First approval' of instance {approval}: it needs "
        "the request_approver role for security domain 'acme/emea/paris', which "
        "you do not hold there."
    )


def test_role_in_another_domain_branch_is_refused(database, approval):
    task = task_of(database, approval, "approve1")

    assert refused(database, task.id, APAC_APPROVER, {"decision": "approve"}) == (
        f"You may not work task 'First approval' of instance {approval}: it needs "
        "the request_approver role for security domain 'acme/emea/paris', which "
        "you do not hold there."
    )


def test_requester_may_not_approve_own_request(database, approval):
    task = task_of(database, approval, "approve1")
    requester_approver = REQUESTER.__class__(
        "alice", REQUEST_DOMAIN, (("request_approver", "acme"),)
    )

    assert refused(database, task.id, requester_approver, {"decision": "approve"}) == (
        f"You started instance {approval}, so you may not work its task 'First "
        "approval': separation of duties requires someone else to do it."
    )


def test_refusal_writes_nothing(database, approval):
    task = task_of(database, approval, "approve1")
    before = count(database, HistoryEntry)

    refused(database, task.id, NOBODY, {"decision": "approve"})

    assert count(database, HistoryEntry) == before
    assert [t.id for t in open_tasks(database, approval)] == [task.id]


def test_same_person_may_not_take_the_same_step_twice(database, two_step):
    complete(database, task_of(database, two_step, "approve").id, APPROVER)
    second = task_of(database, two_step, "approve")

    assert refused(database, second.id, APPROVER) == (
        f"You already completed an earlier 'Approve' step of instance {two_step}; "
        "a different person must take this step."
    )
    assert complete(database, second.id, SECOND_APPROVER) == "running"


def test_lane_gives_the_role_of_the_task(database, two_step):
    task = task_of(database, two_step, "approve")

    assert task.lane == "Request Approver"
    assert task.candidate_groups == ["request_approver"]
    assert refused(database, task.id, DISTRIBUTOR) == (
        f"You may not work task 'Approve' of instance {two_step}: it needs the "
        "request_approver role for security domain 'acme/emea/paris', which you "
        "do not hold there."
    )


def test_task_assigned_to_someone_else_is_refused(database, two_step):
    complete(database, task_of(database, two_step, "approve").id, APPROVER)
    complete(database, task_of(database, two_step, "approve").id, SECOND_APPROVER)
    distribute = task_of(database, two_step, "distribute")
    assert distribute.assignee == "dave"

    assert refused(database, distribute.id, APPROVER) == (
        f"Task 'Distribute' of instance {two_step} is assigned to dave; ask them or "
        "an administrator to unassign it."
    )
    assert complete(database, distribute.id, DISTRIBUTOR) == "completed"


def test_claimed_task_is_refused_to_other_members_of_the_queue(database, approval):
    task = task_of(database, approval, "approve1")
    with database.write() as session:
        instances.claim_task(session, task.id, actor=APPROVER)

    assert refused(database, task.id, SECOND_APPROVER, {"decision": "approve"}) == (
        f"Task 'First approval' of instance {approval} is assigned to bob; ask them "
        "or an administrator to unassign it."
    )


def test_claiming_a_task_one_holds_records_it_once(database, approval):
    task = task_of(database, approval, "approve1")
    for _ in range(2):
        with database.write() as session:
            instances.claim_task(session, task.id, actor=APPROVER)

    assert task_of(database, approval, "approve1").assignee == "bob"
    assert actions(database, approval).count("task_claimed") == 1


FORM_ERRORS = [
    (
        {},
        {"title": "Title is required.", "kind": "Kind is required."},
    ),
    (
        {"title": "Token", "kind": "paper"},
        {"kind": "Kind must be one of: hardware, software."},
    ),
    (
        {"title": "Token", "kind": "hardware", "quantity": "many"},
        {"quantity": "Quantity must be a whole number."},
    ),
    (
        {"title": "Token", "kind": "hardware", "quantity": 9},
        {"quantity": "Quantity must be at most 5."},
    ),
    (
        {"title": "Token", "kind": "hardware", "quantity": "0"},
        {"quantity": "Quantity must be at least 1."},
    ),
    (
        {"title": "Token", "kind": "hardware", "quantity": True},
        {"quantity": "Quantity must be a whole number."},
    ),
    (
        {"title": "Token", "kind": "hardware", "urgent": "maybe"},
        {"urgent": "Urgent must be true or false."},
    ),
    (
        {"title": "Token", "kind": "hardware", "needed_by": "31/12/2026"},
        {"needed_by": "Needed by must be a date written as YYYY-MM-DD."},
    ),
    (
        {"title": "A very long title", "kind": "hardware"},
        {"title": "Title must be at most 10 characters."},
    ),
    (
        {"title": "Token", "kind": "hardware", "approvals_needed": 0},
        {
            "approvals_needed": "'approvals_needed' is not a field of this task; "
            "the fields are: title, kind, quantity, urgent, needed_by."
        },
    ),
]


@pytest.mark.parametrize(
    ("data", "errors"),
    FORM_ERRORS,
    ids=[
        "required",
        "enum",
        "long-text",
        "long-max",
        "long-min",
        "long-bool",
        "boolean",
        "date",
        "too-long",
        "unknown-field",
    ],
)
def test_form_errors_are_reported_per_field(database, form_task, data, errors):
    instance_id, task_id = form_task
    before = count(database, HistoryEntry)

    with pytest.raises(ValidationFailed) as err:
        complete(database, task_id, APPROVER, data)

    assert err.value.field_errors == errors
    assert str(err.value) == (
        "The form has errors; correct them and submit again. "
        + "; ".join(f"{k}: {v}" for k, v in errors.items())
    )
    assert count(database, HistoryEntry) == before
    assert [t.id for t in open_tasks(database, instance_id)] == [task_id]


def test_form_values_are_converted_to_their_types(database, form_task):
    instance_id, task_id = form_task

    complete(
        database,
        task_id,
        APPROVER,
        {
            "title": "Token",
            "kind": "software",
            "quantity": " 3 ",
            "urgent": "yes",
            "needed_by": "2026-12-31",
        },
    )

    with database.read() as session:
        data = instances.describe_instance(session, instance_id).data
    assert {k: data[k] for k in ("title", "kind", "quantity", "urgent")} == {
        "title": "Token",
        "kind": "software",
        "quantity": 3,
        "urgent": True,
    }
    assert data["needed_by"] == "2026-12-31"


def test_save_keeps_data_and_leaves_the_task_open(database, form_task):
    instance_id, task_id = form_task

    with database.write() as session:
        instances.save_task(
            session, task_id, actor=APPROVER, data={"title": "Draft", "quantity": "2"}
        )

    (task,) = open_tasks(database, instance_id)
    assert task.saved_data == {"title": "Draft", "quantity": 2}
    assert actions(database, instance_id)[-1] == "task_saved"


def test_unknown_task_is_not_found(database, approval):
    with pytest.raises(NotFound) as err:
        complete(database, "no-such-task", APPROVER, {})

    assert str(err.value) == (
        "Task no-such-task does not exist; reload your task list."
    )


def test_cancel_by_requester_cancels_open_tasks(database, approval):
    task = task_of(database, approval, "approve1")

    with database.write() as session:
        instances.cancel_instance(
            session, approval, actor=REQUESTER, reason="No longer needed"
        )

    with database.read() as session:
        instance = session.get(ProcessInstance, approval)
        assert (instance.status, instance.cancel_reason, instance.cancelled_by) == (
            "cancelled",
            "No longer needed",
            "alice",
        )
        assert session.get(HumanTask, task.id).status == "cancelled"
    assert actions(database, approval)[-2:] == ["task_cancelled", "instance_cancelled"]
    with pytest.raises(InstanceNotActive) as err:
        complete(database, task.id, APPROVER, {"decision": "approve"})
    assert str(err.value) == (
        f"Task 'First approval' of instance {approval} is no longer open: the "
        "request is cancelled. Nothing was changed."
    )


def test_cancel_is_refused_to_others_and_after_the_end(database, approval):
    with pytest.raises(PermissionDenied) as err:
        with database.write() as session:
            instances.cancel_instance(session, approval, actor=APPROVER, reason="x")
    assert str(err.value) == (
        f"You may not cancel instance {approval}; only its requester or an "
        "administrator of its security domain can."
    )

    with database.write() as session:
        instances.cancel_instance(session, approval, actor=REQUESTER, reason="x")
    with pytest.raises(InstanceNotActive) as err:
        with database.write() as session:
            instances.cancel_instance(session, approval, actor=REQUESTER, reason="y")
    assert str(err.value) == (
        f"Instance {approval} is already cancelled; nothing to cancel."
    )


def test_cancel_needs_a_reason(database, approval):
    with pytest.raises(ValidationFailed) as err:
        with database.write() as session:
            instances.cancel_instance(session, approval, actor=REQUESTER, reason=" ")

    assert err.value.field_errors == {"reason": "A reason is required."}


def test_inbox_lists_tasks_by_role_scope_and_separation_of_duties(database, two_step):
    def inbox(actor):
        with database.read() as session:
            return [t.task_spec for t in instances.list_tasks(session, actor)]

    assert inbox(APPROVER) == ["approve"]
    assert inbox(SECOND_APPROVER) == ["approve"]
    assert inbox(APAC_APPROVER) == []
    assert inbox(REQUESTER) == []
    assert inbox(NOBODY) == []

    complete(database, task_of(database, two_step, "approve").id, APPROVER)

    assert inbox(APPROVER) == []
    assert inbox(SECOND_APPROVER) == ["approve"]


def test_listeners_see_every_history_entry_in_the_transaction(database, approval):
    seen = []

    def listener(session, instance, entry, task):
        seen.append((entry.action, task.task_spec if task is not None else None))

    events.subscribe(listener)
    try:
        complete(
            database,
            task_of(database, approval, "approve1").id,
            APPROVER,
            {"decision": "reject"},
        )
    finally:
        events.unsubscribe(listener)

    assert seen == [("task_completed", "approve1"), ("instance_completed", None)]
