"""Stored workflow state: restored at every wait state as it was in memory."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from helpers_engine import (
    APPROVER,
    DISTRIBUTOR,
    REQUEST_DOMAIN,
    SECOND_APPROVER,
    complete,
    deploy,
    open_tasks,
    start,
    task_of,
)
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine import deployments, instances
from engine.models import ProcessInstance, Timer
from engine.spiff import SERIALIZER_VERSION, dump_state, load_workflow
from engine.worker import fire_due_timers


def snapshot(workflow: BpmnWorkflow) -> tuple[list, dict]:
    """Describe a workflow independently of task ids: states and ready data."""
    states = sorted(
        (t.task_spec.name, TaskState.get_name(t.state)) for t in workflow.get_tasks()
    )
    ready = {
        t.task_spec.name: t.data
        for t in workflow.get_tasks(state=TaskState.READY, manual=True)
    }
    return states, ready


class Twin:
    """The same process run in memory next to the stored instance, step by step."""

    def __init__(self, database, key: str, variables: dict):
        with database.read() as session:
            definition = deployments.latest_definition(session, key)
            spec, subprocess_specs = deployments.load_spec(session, definition)
        self.workflow = BpmnWorkflow(
            spec, subprocess_specs, script_engine=instances._script_engine
        )
        self.workflow.task_tree.data.update(variables)
        self.workflow.do_engine_steps()

    def complete(self, task_spec: str, data: dict) -> None:
        (task,) = [
            t
            for t in self.workflow.get_tasks(state=TaskState.READY, manual=True)
            if t.task_spec.name == task_spec
        ]
        task.data.update(data)
        task.run()
        self.workflow.do_engine_steps()

    def refresh_timers(self) -> None:
        self.workflow.refresh_timers()
        self.workflow.do_engine_steps()


def assert_restores_as_in_memory(database, instance_id: int, twin: Twin) -> None:
    with database.read() as session:
        instance = session.get(ProcessInstance, instance_id)
        restored = instances.load(session, instance)
        state = instance.state
        assert instance.serializer_version == SERIALIZER_VERSION

    assert snapshot(restored) == snapshot(twin.workflow)
    assert restored.completed == twin.workflow.completed
    ready = {str(t.id) for t in restored.get_tasks(state=TaskState.READY, manual=True)}
    assert {t.id for t in open_tasks(database, instance_id)} == ready
    # Storing the restored workflow again gives back the same state.
    assert dump_state(restored) == state


def test_restore_at_every_wait_state(database, settings):
    deploy(database, "engine_child.bpmn", "engine_waits.bpmn")
    instance_id = start(database, "engine_waits")
    twin = Twin(database, "engine_waits", {})
    assert_restores_as_in_memory(database, instance_id, twin)

    steps = [
        ("first", APPROVER, {"note": "one"}),
        ("left", SECOND_APPROVER, {"note": "left"}),
        ("right", DISTRIBUTOR, {"note": "right side"}),
    ]
    for task_spec, actor, data in steps:
        complete(database, task_of(database, instance_id, task_spec).id, actor, data)
        twin.complete(task_spec, data)
        assert_restores_as_in_memory(database, instance_id, twin)

    # Now waiting on the timer, with the script's result in the data.
    with database.read() as session:
        (timer,) = session.scalars(
            select(Timer).where(Timer.instance_id == instance_id)
        ).all()
        due = timer.due_at
    remaining = (max(due, twin_due(twin)) - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.05)

    assert fire_due_timers(database, settings) == 1
    twin.refresh_timers()
    assert_restores_as_in_memory(database, instance_id, twin)

    # Inside the called process.
    for task_spec, actor, data in [
        ("child_task", APPROVER, {"note": "child"}),
        ("last", APPROVER, {"note": "end"}),
    ]:
        complete(database, task_of(database, instance_id, task_spec).id, actor, data)
        twin.complete(task_spec, data)
        assert_restores_as_in_memory(database, instance_id, twin)

    assert twin.workflow.completed
    with database.read() as session:
        assert session.get(ProcessInstance, instance_id).status == "completed"


def twin_due(twin: Twin) -> datetime:
    """Return when the in-memory twin's timer is due."""
    for t in twin.workflow.get_tasks(state=TaskState.WAITING):
        value = t._get_internal_data("event_value")
        if value:
            due = datetime.fromisoformat(value)
            return due if due.tzinfo else due.replace(tzinfo=UTC)
    return datetime.now(UTC)


def test_restore_at_each_approval_step(database):
    deploy(database, "approval.bpmn")
    instance_id = start(database, "approval", domain_path=REQUEST_DOMAIN)
    twin = Twin(database, "approval", {})
    assert_restores_as_in_memory(database, instance_id, twin)

    for task_spec, actor, data in [
        ("approve1", APPROVER, {"decision": "approve", "comment": "fine"}),
        ("distribute", DISTRIBUTOR, {"serial_number": "SN-1", "quantity": 1}),
    ]:
        complete(database, task_of(database, instance_id, task_spec).id, actor, data)
        twin.complete(task_spec, data)
        assert_restores_as_in_memory(database, instance_id, twin)


def test_state_holds_no_spec_and_names_its_serializer_version(database):
    deploy(database, "engine_child.bpmn", "engine_waits.bpmn")
    instance_id = start(database, "engine_waits")

    with database.read() as session:
        instance = session.get(ProcessInstance, instance_id)
        state = json.loads(instance.state)
        raw = instance.state
    assert state["serializer_version"] == SERIALIZER_VERSION
    assert "spec" not in state and "subprocess_specs" not in state
    assert "task_specs" not in raw
    assert "first" in raw  # task spec names only, as references


def test_state_of_an_older_serializer_version_is_migrated(database):
    """A state written before the current version goes through Spiff's migrations."""
    deploy(database, "approval.bpmn")
    instance_id = start(database, "approval", domain_path=REQUEST_DOMAIN)
    with database.read() as session:
        instance = session.get(ProcessInstance, instance_id)
        spec, subprocess_specs = deployments.load_spec(session, instance.definition)
        state = json.loads(instance.state)
    state["serializer_version"] = "1.3"

    restored = load_workflow(
        json.dumps(state), spec, subprocess_specs, instances._script_engine
    )

    assert [
        t.task_spec.name for t in restored.get_tasks(state=TaskState.READY, manual=True)
    ] == ["approve1"]
