"""Deployment validation: every bad diagram is refused with its exact message."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_engine import count, data_file, deploy

from engine import services, validation
from engine.errors import DeploymentError
from engine.models import (
    DecisionDefinition,
    Deployment,
    DeploymentFile,
    ProcessDefinition,
    SpecBlob,
)

TEST_TOPIC = "engine_test_ship"
POLICY = Path(__file__).resolve().parent.parent / "bpmn" / "workflow_policy.dmn"
UNDERSCORE_ATTRIBUTE = (
    "is not allowed in diagram scripts: attributes starting with an underscore "
    "reach into Python's internals; work with the task data and the helpers "
    "listed in the documentation"
)


@pytest.fixture
def test_topic():
    """Register a service topic for the duration of a test."""

    @services.register(TEST_TOPIC)
    def ship(call):
        call.data["shipped"] = True

    yield TEST_TOPIC
    services.unregister(TEST_TOPIC)


def refusal(database, *names, **kwargs) -> str:
    """Deploy and return the text of the DeploymentError it must raise."""
    with pytest.raises(DeploymentError) as err:
        deploy(database, *names, **kwargs)
    return str(err.value)


def one_problem(text: str) -> str:
    return f"Deployment refused, nothing was deployed (1 problem):\n  {text}"


def assert_nothing_stored(database):
    for model in (
        Deployment,
        DeploymentFile,
        ProcessDefinition,
        DecisionDefinition,
        SpecBlob,
    ):
        assert count(database, model) == 0, model.__name__


BAD_DIAGRAMS = [
    (
        "engine_bad_not_xml.bpmn",
        "engine_bad_not_xml.bpmn, line 1: the file is not well-formed XML: Start "
        "tag expected, '<' not found; open and save it again in "
        "the modeler.",
    ),
    (
        "engine_bad_empty.bpmn",
        "engine_bad_empty.bpmn: the file is empty; export the diagram again from "
        "the modeler.",
    ),
    (
        "engine_bad_dmn_named.bpmn",
        "engine_bad_dmn_named.bpmn, line 1: this is not a BPMN 2.0 file (the root "
        "element must be bpmn:definitions); save it as BPMN from the modeler.",
    ),
    (
        "engine_bad_schema.bpmn",
        "engine_bad_schema.bpmn, line 5, element 'odd': the file does not follow "
        "the BPMN 2.0 schema: Element 'bpmn:frobnicate': This element is not "
        "expected. Expected is one of ( bpmn:artifact, bpmn:association, "
        "bpmn:group, bpmn:textAnnotation, bpmn:resourceRole, bpmn:performer, "
        "bpmn:humanPerformer, bpmn:potentialOwner, "
        "bpmn:correlationSubscription, bpmn:supports ); correct it in the "
        "modeler.",
    ),
    (
        "engine_bad_not_executable.bpmn",
        "engine_bad_not_executable.bpmn, line 1: the file holds no executable "
        "process; tick 'Executable' on the process in the modeler "
        '(isExecutable="true").',
    ),
    (
        "engine_bad_unroutable.bpmn",
        "engine_bad_unroutable.bpmn, line 5, element 'nobody': this user task "
        "cannot be routed to anyone; put it in a lane or set candidate groups, "
        "candidate users or an assignee.",
    ),
    (
        "val_unknown_group.bpmn",
        "val_unknown_group.bpmn, line 5, element 'approve': candidate group "
        "'request_aprover' is not a role, so nobody could work this task; use one "
        "of: request_approver, token_distributor, token_administrator, "
        "administrator, or an expression such as ${group}.",
    ),
    (
        "engine_bad_condition.bpmn",
        "engine_bad_condition.bpmn, line 9, element 'f_yes': the condition is "
        "refused: Line 1: syntax error: invalid syntax; fix the condition in the "
        "modeler and deploy again.",
    ),
    (
        "engine_bad_script_import.bpmn",
        "engine_bad_script_import.bpmn, line 5, element 'run_script': the script "
        'is refused: Line 1: "import os" is not allowed in diagram scripts: '
        "imports are refused; use the helpers listed in the documentation; fix "
        "the script in the modeler and deploy again.",
    ),
    (
        "engine_bad_timer.bpmn",
        "engine_bad_timer.bpmn, line 5, element 'wait': 'P2X' is not a valid ISO "
        '8601 timeDuration; write for example "P2D".',
    ),
    (
        "engine_bad_topic.bpmn",
        "engine_bad_topic.bpmn, line 5, element 'call_out': no handler is "
        "registered for topic 'no_such_topic'; use one of: {topics}.",
    ),
    (
        "engine_bad_decision_ref.bpmn",
        "engine_bad_decision_ref.bpmn, line 5, element 'decide': decision "
        "'no_such_decision' is not deployed and not part of this deployment; "
        "deploy its .dmn file too.",
    ),
    (
        "engine_bad_call.bpmn",
        "engine_bad_call.bpmn, line 5, element 'call_missing': called process "
        "'no_such_process' is not deployed and not part of this deployment; "
        "deploy its .bpmn file too.",
    ),
    (
        "engine_bad_entry.dmn",
        "engine_bad_entry.dmn, line 10, element 'engine_bad_entry': input entry "
        "'\"hardware\" +' does not compile: Line 1: syntax error: invalid syntax; "
        "write a value such as \"hardware\", a comparison such as '> 2', or '-' "
        "for any.",
    ),
]


@pytest.mark.parametrize(
    ("filename", "message"), BAD_DIAGRAMS, ids=[f for f, _ in BAD_DIAGRAMS]
)
def test_bad_diagram_is_refused_with_its_message(
    database, test_topic, filename, message
):
    message = message.replace("{topics}", ", ".join(sorted(services.topics())))

    assert refusal(database, filename) == one_problem(message)
    assert_nothing_stored(database)


def test_script_with_dunder_access_is_refused_naming_each_attribute(database):
    text = refusal(database, "engine_bad_script_dunder.bpmn")

    where = "engine_bad_script_dunder.bpmn, line 5, element 'run_script'"
    fix = "fix the script in the modeler and deploy again."
    assert text == (
        "Deployment refused, nothing was deployed (3 problems):\n"
        f'  {where}: the script is refused: Line 1: "__subclasses__" '
        f"{UNDERSCORE_ATTRIBUTE}; {fix}\n"
        f'  {where}: the script is refused: Line 1: "__bases__" '
        f"{UNDERSCORE_ATTRIBUTE}; {fix}\n"
        f'  {where}: the script is refused: Line 1: "__class__" '
        f"{UNDERSCORE_ATTRIBUTE}; {fix}"
    )
    assert_nothing_stored(database)


def test_wrong_extension_is_refused(database):
    _, content = data_file("approval.bpmn")

    assert refusal(database, ("approval.xml", content)) == one_problem(
        "approval.xml: only .bpmn and .dmn files can be deployed; rename it or "
        "leave it out of the deployment."
    )


def test_file_over_the_size_limit_is_refused(database):
    name, content = data_file("approval.bpmn")

    text = refusal(database, "approval.bpmn", max_bytes=1000)

    assert text == one_problem(
        f"approval.bpmn: the file is {len(content):,} bytes, more than the limit "
        "of 1,000 bytes (MAX_UPLOAD_BYTES); split the model or raise the limit."
    )


def test_duplicate_ids_across_files_are_refused(database):
    text = refusal(database, "approval.bpmn", "engine_dup_approval.bpmn")

    assert text == one_problem(
        "engine_dup_approval.bpmn, line 3, element 'approval': id 'approval' is "
        "also defined in approval.bpmn; give each process and decision a unique "
        "id."
    )
    assert_nothing_stored(database)


def test_same_file_name_twice_is_refused(database):
    text = refusal(database, "approval.bpmn", "approval.bpmn")

    assert text.startswith(
        "Deployment refused, nothing was deployed (2 problems):\n"
        "  approval.bpmn: the same file name appears twice in the deployment.\n"
    )


def test_empty_deployment_is_refused(database):
    assert refusal(database) == one_problem("(deployment): no files were given.")


def test_registered_topic_is_accepted(database, test_topic):
    result = deploy(database, "engine_service.bpmn")

    assert [(i.key, i.status) for i in result.items] == [("engine_service", "new")]


def test_bad_decision_table_with_its_process_is_refused(database):
    text = refusal(database, "engine_bad_entry.dmn", "engine_bad_uses_bad_entry.bpmn")

    assert text == one_problem(
        "engine_bad_entry.dmn, line 10, element 'engine_bad_entry': input entry "
        "'\"hardware\" +' does not compile: Line 1: syntax error: invalid syntax; "
        "write a value such as \"hardware\", a comparison such as '> 2', or '-' "
        "for any."
    )


def test_decision_reference_resolves_against_deployed_decisions(database):
    deploy(database, "engine_policy.dmn", "engine_uses_policy.bpmn")
    name, content = data_file("engine_uses_policy.bpmn")

    result = deploy(database, (name, content.replace(b'"Review"', b'"Check"')))

    assert [(i.key, i.version) for i in result.items] == [("engine_uses_policy", 2)]


def test_call_activity_resolves_against_deployed_processes(database):
    deploy(database, "engine_child.bpmn")

    result = deploy(database, "engine_waits.bpmn")

    assert [(i.key, i.version, i.status) for i in result.items] == [
        ("engine_waits", 1, "new")
    ]


def test_one_bad_file_stores_nothing_of_the_deployment(database):
    text = refusal(database, "approval.bpmn", "engine_bad_unroutable.bpmn")

    assert text == one_problem(
        "engine_bad_unroutable.bpmn, line 5, element 'nobody': this user task "
        "cannot be routed to anyone; put it in a lane or set candidate groups, "
        "candidate users or an assignee."
    )
    assert_nothing_stored(database)


def test_one_bad_file_leaves_earlier_deployments_as_they_were(database):
    deploy(database, "approval.bpmn")
    name, content = data_file("approval.bpmn")
    changed = (name, content.replace(b"First approval", b"Approval 1"))

    with pytest.raises(DeploymentError):
        deploy(database, changed, "engine_bad_script_import.bpmn")

    assert count(database, Deployment) == 1
    assert count(database, ProcessDefinition) == 1
    assert count(database, SpecBlob) == 1


def test_every_problem_of_a_deployment_is_listed(database):
    with pytest.raises(DeploymentError) as err:
        deploy(
            database,
            "engine_bad_unroutable.bpmn",
            "engine_bad_timer.bpmn",
            "engine_bad_empty.bpmn",
        )

    assert [(p.file, p.line, p.element_id) for p in err.value.problems] == [
        ("engine_bad_unroutable.bpmn", 5, "nobody"),
        ("engine_bad_timer.bpmn", 5, "wait"),
        ("engine_bad_empty.bpmn", None, None),
    ]
    assert str(err.value).startswith(
        "Deployment refused, nothing was deployed (3 problems):\n"
    )


def test_sandbox_refuses_importing_os_at_deploy_time(database):
    with pytest.raises(DeploymentError) as err:
        deploy(database, "engine_bad_script_import.bpmn")

    (problem,) = err.value.problems
    assert problem.element_id == "run_script"
    assert '"import os" is not allowed' in problem.message


def problems_of(database, *names) -> list[str]:
    """Deploy and return each problem of the DeploymentError it must raise."""
    with pytest.raises(DeploymentError) as err:
        deploy(database, *names)
    return [str(p) for p in err.value.problems]


def test_lane_that_stands_for_no_role_is_refused(database):
    roles = "Request Approver, Token Distributor, Token Administrator, Administrator"

    assert problems_of(database, "val_unknown_lane.bpmn") == [
        "val_unknown_lane.bpmn, line 16, element 'approve': lane 'Approvers' "
        "stands for no role, so nobody could work this user task; name the lane "
        f"after a role ({roles}) or set candidate groups on the task.",
        "val_unknown_lane.bpmn, line 17, element 'distribute': lane "
        "'lane_unnamed' has no name, so nobody could work this user task; name "
        f"the lane after a role ({roles}) or set candidate groups on the task.",
    ]
    assert_nothing_stored(database)


def test_routing_expressions_are_compiled_at_deploy_time(database):
    where = "val_routing_expressions.bpmn, line 5, element 'approve'"

    assert problems_of(database, "val_routing_expressions.bpmn") == [
        f"{where}: the candidate users expression is refused: Line 1: "
        f'"__class__" {UNDERSCORE_ATTRIBUTE}; fix the candidate users expression '
        "in the modeler and deploy again.",
        f"{where}: the assignee expression is refused: Line 1: syntax error: "
        "invalid syntax; fix the assignee expression in the modeler and deploy "
        "again.",
    ]
    assert_nothing_stored(database)


def test_loop_expressions_are_compiled_at_deploy_time(database):
    fix = "in the modeler and deploy again."

    assert problems_of(database, "val_bad_loops.bpmn") == [
        "val_bad_loops.bpmn, line 7, element 'each': the loop cardinality is "
        f'refused: Line 1: "__bases__" {UNDERSCORE_ATTRIBUTE}; fix the loop '
        f"cardinality {fix}",
        "val_bad_loops.bpmn, line 7, element 'each': the loop cardinality is "
        f'refused: Line 1: "__class__" {UNDERSCORE_ATTRIBUTE}; fix the loop '
        f"cardinality {fix}",
        "val_bad_loops.bpmn, line 8, element 'each': the completion condition is "
        "refused: Line 1: syntax error: invalid syntax; fix the completion "
        f"condition {fix}",
        "val_bad_loops.bpmn, line 17, element 'retry': the loop condition is "
        'refused: Line 1: "open()" is not allowed in diagram scripts: scripts '
        "cannot read or write files or the console; use the helpers listed in "
        f"the documentation; fix the loop condition {fix}",
        "val_bad_loops.bpmn, line 12, element 'review': camunda:collection "
        "'${approvers}' is not the name of a variable; write the bare name of a "
        "task data variable, such as approvers, without ${} or other "
        "expressions.",
    ]
    assert_nothing_stored(database)


def test_loops_and_routing_expressions_that_compile_are_deployed(database):
    result = deploy(database, "val_good_loops.bpmn")

    assert [(i.key, i.status) for i in result.items] == [("val_good_loops", "new")]


def test_literal_output_entries_must_have_their_output_type(database):
    where = "val_output_types.dmn, line {}, element 'rule_bad'"
    change = "or change the type of the output in the modeler."

    assert problems_of(database, "val_output_types.dmn") == [
        f"{where.format(33)}: output entry \"one\" of 'steps' is a text, but the "
        f"output's type is integer; write an integer such as 2, {change}",
        f"{where.format(34)}: output entry 1 of 'ship' is an integer, but the "
        f"output's type is boolean; write True or False, {change}",
        f"{where.format(35)}: output entry 2 of 'reason' is an integer, but the "
        'output\'s type is string; write a quoted text such as "hardware", '
        f"{change}",
        f"{where.format(36)}: output entry True of 'share' is a boolean, but the "
        f"output's type is double; write a number such as 2.5, {change}",
    ]
    assert_nothing_stored(database)


def test_literal_output_entry_that_fails_is_refused(database):
    name, content = data_file("val_output_types.dmn")
    content = content.replace(b"<text>-1</text>", b"<text>{[1]}</text>")

    assert problems_of(database, (name, content))[0] == (
        "val_output_types.dmn, line 17, element 'rule_good': output entry {[1]} "
        "of 'steps' fails: TypeError: unhashable type: 'list'; write a value "
        "that can be computed, or fix it in the modeler."
    )


@pytest.fixture
def policy_limits():
    """Limit the policy's approval steps as the provisioning product does."""
    key = ("workflow_policy", "approval_steps")
    before = validation.registered_output_values().get(key)
    validation.register_output_values(
        *key, range(0, 5), "a request takes zero to four approval steps"
    )
    yield
    if before is None:
        validation.unregister_output_values(*key)
    else:
        validation.register_output_values(*key, before.allowed, before.reason)


def policy_with(steps: str) -> tuple[str, bytes]:
    """Return the product's workflow policy with the APAC rule's steps replaced."""
    content = POLICY.read_bytes()
    assert content.count(b"<text>3</text>") == 1
    return POLICY.name, content.replace(
        b"<text>3</text>", f"<text>{steps}</text>".encode()
    )


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            "7",
            "output entry 7 of 'approval_steps' is not allowed: a request takes "
            "zero to four approval steps; write a value from 0 to 4.",
        ),
        (
            "-1",
            "output entry -1 of 'approval_steps' is not allowed: a request takes "
            "zero to four approval steps; write a value from 0 to 4.",
        ),
        (
            '"one"',
            "output entry \"one\" of 'approval_steps' is a text, but the output's "
            "type is integer; write an integer such as 2, or change the type of "
            "the output in the modeler.",
        ),
    ],
)
def test_policy_with_approval_steps_out_of_range_is_refused(
    database, policy_limits, steps, message
):
    text = refusal(database, policy_with(steps))

    assert text == one_problem(
        f"workflow_policy.dmn, line 34, element 'rule_apac_new_hardware': {message}"
    )
    assert_nothing_stored(database)


def test_policy_with_four_approval_steps_is_deployed(database, policy_limits):
    result = deploy(database, policy_with("4"))

    assert [(i.key, i.status) for i in result.items] == [("workflow_policy", "new")]


def test_registered_values_are_named_in_the_refusal(database):
    validation.register_output_values(
        "val_output_types", "steps", (0, 1), "at most one step"
    )
    try:
        problems = problems_of(database, "val_output_types.dmn")
    finally:
        validation.unregister_output_values("val_output_types", "steps")

    assert problems[0] == (
        "val_output_types.dmn, line 17, element 'rule_good': output entry -1 of "
        "'steps' is not allowed: at most one step; write one of: 0, 1."
    )
