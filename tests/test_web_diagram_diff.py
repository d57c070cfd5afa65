"""What changed between two versions of a diagram (engine.diagram_diff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.diagram_diff import DiagramUnreadable, diff_processes

ROOT = Path(__file__).resolve().parent.parent
NEW_TOKEN = (ROOT / "bpmn" / "new_token.bpmn").read_bytes()


def test_identical_versions_have_no_difference():
    assert diff_processes(NEW_TOKEN, NEW_TOKEN, "new_token").empty


def test_moving_shapes_is_not_a_change():
    moved = NEW_TOKEN.replace(b'x="', b'x="1', 5)

    assert moved != NEW_TOKEN
    assert diff_processes(NEW_TOKEN, moved, "new_token").empty


def test_renamed_task_and_changed_candidate_group_are_reported():
    changed = NEW_TOKEN.replace(
        b'name="Approve request"', b'name="Approve the request"'
    ).replace(
        b'camunda:candidateGroups="token_distributor"',
        b'camunda:candidateGroups="token_administrator"',
        1,
    )

    tasks = diff_processes(NEW_TOKEN, changed, "new_token").tasks_only()

    assert [(c.element.id, c.changes) for c in tasks.changed] == [
        ("approve_request", ["name 'Approve request' -> 'Approve the request'"]),
        (
            "distribute_token",
            ["candidateGroups 'token_distributor' -> 'token_administrator'"],
        ),
    ]
    assert tasks.added == [] and tasks.removed == []


def test_added_and_removed_tasks_are_reported():
    old = b"""<?xml version="1.0"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:userTask id="check" name="Check"/>
  </bpmn:process>
</bpmn:definitions>"""
    new = old.replace(
        b'<bpmn:userTask id="check" name="Check"/>',
        b'<bpmn:userTask id="review" name="Review">'
        b"<bpmn:extensionElements><camunda:formData>"
        b'<camunda:formField id="ok" label="OK" type="boolean"/>'
        b"</camunda:formData></bpmn:extensionElements></bpmn:userTask>",
    )

    diff = diff_processes(old, new)

    assert [e.label for e in diff.added] == ["Review (review)"]
    assert dict(diff.added[0].details) == {"form field ok": "boolean OK"}
    assert [e.label for e in diff.removed] == ["Check (check)"]


def test_changed_condition_on_a_flow_is_a_change_of_another_element():
    changed = NEW_TOKEN.replace(
        b"approval_round &lt; approval_steps", b"approval_round &lt;= approval_steps"
    )
    assert changed != NEW_TOKEN

    diff = diff_processes(NEW_TOKEN, changed, "new_token")

    assert diff.tasks_only().empty
    assert len(diff.changed) == 1
    assert diff.changed[0].element.kind == "sequenceFlow"
    assert diff.changed[0].changes == [
        "condition 'approval_round < approval_steps' -> "
        "'approval_round <= approval_steps'"
    ]


@pytest.mark.parametrize(
    ("old", "new", "process_id", "message"),
    [
        (b"<not xml", NEW_TOKEN, None, "the older version is not readable XML"),
        (NEW_TOKEN, NEW_TOKEN, "other", "the older version has no process 'other'."),
    ],
)
def test_unreadable_versions_are_refused_with_a_message(old, new, process_id, message):
    with pytest.raises(DiagramUnreadable) as refused:
        diff_processes(old, new, process_id)

    assert str(refused.value).startswith(message)
