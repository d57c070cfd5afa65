"""Tests for the sandbox that runs the Python in diagrams and decision tables."""

from __future__ import annotations

import ast
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from RestrictedPython import RestrictingNodeTransformer
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.util.task import TaskState

from engine import scripting
from engine.scripting import (
    RestrictedEnvironment,
    RestrictedScriptEngine,
    ScriptRefusedError,
    check_source,
)

HELPERS_HINT = "use the helpers listed in the documentation"
INSPECT = "scripts cannot inspect objects or the interpreter"


def underscore_attribute(line: int, name: str) -> str:
    return (
        f'Line {line}: "{name}" is not allowed in diagram scripts: attributes '
        "starting with an underscore reach into Python's internals; work with "
        "the task data and the helpers listed in the documentation"
    )


def underscore_name(line: int, name: str) -> str:
    return (
        f'Line {line}: "{name}" is not allowed in diagram scripts: names starting '
        "with an underscore are reserved for Python's internals; start variable "
        f"names with a letter and {HELPERS_HINT}"
    )


# --- what designers may write -------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount * 2 + 1", 85),
        ("amount > 40 and kind == 'Hardware'", True),
        ("len(items)", 3),
        ("[i * 10 for i in items if i > 1]", [20, 30]),
        ("{k: v for k, v in zip(['a', 'b'], items)}", {"a": 1, "b": 2}),
        ("sum(items) / len(items)", 2.0),
        ("sorted(items, reverse=True)[0]", 3),
        ("max(items) - min(items)", 2),
        ("kind.lower() == 'hardware' and kind.upper() == 'HARDWARE'", True),
        ("f'{kind}-{amount}'", "Hardware-42"),
        ("'%s/%d' % (kind, amount)", "Hardware/42"),
        ("isinstance(amount, int)", True),
        ("round(Decimal('2.675'), 2)", Decimal("2.68")),
        ("start + timedelta(days=30)", date(2024, 1, 31)),
        ("date(2024, 1, 1) == start", True),
        ("any(i > 2 for i in items) and all(i > 0 for i in items)", True),
        ("list(range(3)) + list(tuple(set([1])))", [0, 1, 2, 1]),
        ("dict(a=1)['a'] + int('2') + float('0.5')", 3.5),
        ("str(abs(-3)) + str(bool(0))", "3False"),
        ("[(i, v) for i, v in enumerate(items)][-1]", (2, 3)),
        ("\n    amount == 42\n  ", True),
    ],
)
def test_expression_evaluates_over_task_data(expression: str, expected: Any) -> None:
    data = {"amount": 42, "kind": "Hardware", "items": [1, 2, 3]}
    data["start"] = date(2024, 1, 1)

    assert RestrictedEnvironment().evaluate(expression, data) == expected


def test_evaluate_leaves_task_data_untouched() -> None:
    data = {"items": [1, 2]}

    RestrictedEnvironment().evaluate("len(items)", data)

    assert data == {"items": [1, 2]}


def test_evaluate_sees_external_context_below_task_data() -> None:
    environment = RestrictedEnvironment()

    result = environment.evaluate("a + b", {"a": 1}, {"a": 100, "b": 10})

    assert result == 11


def test_script_reads_and_writes_task_data() -> None:
    data = {"a": 1, "d": {"old": 0}, "items": [3, 1, 2], "name": "Ada LOVELACE"}
    script = "\n".join(
        [
            "x = a + 1",
            "x += 1",
            "d['k'] = 1",
            "del d['old']",
            "items.append(4)",
            "first, (second, third) = 1, (2, 3)",
            "count = len(items)",
            "squares = [i * i for i in items if i > 1]",
            "pairs = {}",
            "for key, value in [('p', 1), ('q', 2)]:",
            "    pairs[key] = value",
            "lower = name.lower()",
            "def double(v):",
            "    return v * 2",
            "doubled = double(x)",
            "due = datetime(2024, 1, 1) + timedelta(days=30)",
            "label = 'ok' if count == 4 else 'bad'",
        ]
    )

    RestrictedEnvironment().execute(script, data)

    assert data == {
        "a": 1,
        "d": {"k": 1},
        "items": [3, 1, 2, 4],
        "name": "Ada LOVELACE",
        "x": 3,
        "first": 1,
        "second": 2,
        "third": 3,
        "count": 4,
        "squares": [9, 4, 16],
        "pairs": {"p": 1, "q": 2},
        "key": "q",
        "value": 2,
        "lower": "ada lovelace",
        "doubled": 6,
        "due": datetime(2024, 1, 31),
        "label": "ok",
    }


def test_script_datetime_now_is_a_datetime() -> None:
    data: dict[str, Any] = {}

    RestrictedEnvironment().execute("stamp = datetime.now()", data)

    assert isinstance(data["stamp"], datetime)


def test_script_leaves_no_functions_guards_or_context_in_task_data() -> None:
    data = {"a": 1}

    RestrictedEnvironment().execute(
        "f = lambda v: v\nkind = date\nb = helper + a", data, {"helper": 2}
    )

    assert data == {"a": 1, "b": 3}


def test_helpers_are_callable_and_removed_afterwards() -> None:
    environment = RestrictedEnvironment({"today": lambda: date(2024, 5, 1)})
    data: dict[str, Any] = {}

    environment.execute("when = today() + timedelta(days=1)", data)

    assert data == {"when": date(2024, 5, 2)}
    assert environment.evaluate("today().year", {}) == 2024


def test_task_data_hides_a_builtin_of_the_same_name() -> None:
    data = {"date": "2024-01-01"}

    RestrictedEnvironment().execute("copy = date", data)

    assert data == {"date": "2024-01-01", "copy": "2024-01-01"}


def test_task_data_cannot_replace_a_guard() -> None:
    data = {"_getattr_": "not a function", "name": "Ada"}

    with pytest.raises(ValueError, match="_getattr_"):
        RestrictedEnvironment().execute("low = name.lower()", data)
    assert RestrictedEnvironment().evaluate("name.lower()", data) == "ada"


def test_compiled_code_is_reused_and_the_cache_is_bounded() -> None:
    environment = RestrictedEnvironment(cache_size=2)
    first = environment.compile("a + 1", "eval")
    second = environment.compile("a + 2", "eval")

    assert environment.compile("  a + 1\n", "eval") is first
    environment.compile("a + 3", "eval")

    # "a + 1" was used last, so "a + 2" made room for "a + 3".
    assert environment.compile("a + 1", "eval") is first
    assert environment.compile("a + 2", "eval") is not second


def test_refusals_are_cached_and_raised_every_time() -> None:
    environment = RestrictedEnvironment()

    for _ in range(2):
        with pytest.raises(ScriptRefusedError) as caught:
            environment.compile("import os", "exec")
        assert caught.value.lineno == 1


def test_engine_refuses_helpers_given_twice() -> None:
    with pytest.raises(TypeError, match="Pass helpers to the RestrictedEnvironment"):
        RestrictedScriptEngine(RestrictedEnvironment(), helpers={})


# --- what check_source reports -----------------------------------------------


@pytest.mark.parametrize(
    ("source", "mode", "problems"),
    [
        ("x = 1\ny = x * 2", "exec", []),
        ("a > 1 and b in ['x', 'y']", "eval", []),
        ("x = ", "exec", ["Line 1: syntax error: invalid syntax"]),
        ("x = 1\nif x\n  y = 2", "exec", ["Line 2: syntax error: expected ':'"]),
        ("x = 1", "eval", ["Line 1: syntax error: invalid syntax"]),
        ("\n  ", "eval", ["Line 1: syntax error: the expression is empty"]),
        (
            "x = 1\x00",
            "exec",
            ["Line 1: syntax error: source code string cannot contain null bytes"],
        ),
        (
            "d['k'] += 1",
            "exec",
            [
                "Line 1: \"d['k'] += ...\" is not allowed in diagram scripts; "
                "write d['k'] = d['k'] + ... instead"
            ],
        ),
        (
            "class Token: pass",
            "exec",
            [
                "Line 1: class definitions are not allowed in diagram scripts; "
                "use dicts and lists for structured data"
            ],
        ),
        (
            "x = printed",
            "exec",
            [
                'Line 1: "printed" is a reserved name in diagram scripts; '
                "choose another variable name"
            ],
        ),
        (
            "printed = 1",
            "exec",
            [
                'Line 1: "printed" is a reserved name in diagram scripts; '
                "choose another variable name"
            ],
        ),
        ("_total = 1", "exec", [underscore_name(1, "_total")]),
        (
            "x__roles__ = 1",
            "exec",
            [
                'Line 1: "x__roles__" is not allowed in diagram scripts: names '
                'ending with "__roles__" are reserved for the sandbox; choose '
                "another name"
            ],
        ),
        (
            "async def f():\n    pass",
            "exec",
            [
                "Line 1: AsyncFunctionDef statements are not allowed in diagram "
                "scripts; write that part of the script with plain statements "
                "and expressions"
            ],
        ),
        (
            "x = 1\nfrom os import path",
            "exec",
            [
                'Line 2: "from os import path" is not allowed in diagram scripts: '
                f"imports are refused; {HELPERS_HINT}"
            ],
        ),
    ],
)
def test_check_source_reports_problems(
    source: str, mode: scripting.Mode, problems: list[str]
) -> None:
    assert check_source(source, mode) == problems


@pytest.mark.parametrize(
    ("expression", "literal"),
    [
        ("2", True),
        ("-1", True),
        ('  "hardware"\n', True),
        ("True", True),
        ("None", True),
        ("[1, {'a': (2, -3.5)}, {4}]", True),
        ("not True", True),
        ("steps", False),
        ("len(items)", False),
        ("1 + 1", False),
        ("10 ** 10 ** 9", False),
        ("'one'.upper()", False),
        ("1 +", False),
    ],
)
def test_is_literal_accepts_constants_and_containers_only(
    expression: str, literal: bool
) -> None:
    assert scripting.is_literal(expression) is literal


def test_check_source_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match='mode must be "eval" or "exec", not \'x\''):
        check_source("1", "x")  # type: ignore[arg-type]


# --- attacks -----------------------------------------------------------------

ATTACKS = [
    pytest.param(
        "import os",
        [
            f'Line 1: "import os" is not allowed in diagram scripts: '
            f"imports are refused; {HELPERS_HINT}"
        ],
        id="import",
    ),
    pytest.param(
        "x = __import__('os')",
        [underscore_name(1, "__import__")],
        id="dunder-import",
    ),
    pytest.param(
        "x = open('/etc/passwd').read()",
        [
            'Line 1: "open()" is not allowed in diagram scripts: scripts cannot '
            f"read or write files or the console; {HELPERS_HINT}"
        ],
        id="open",
    ),
    pytest.param(
        "x = ().__class__.__bases__[0].__subclasses__()",
        [
            underscore_attribute(1, "__subclasses__"),
            underscore_attribute(1, "__bases__"),
            underscore_attribute(1, "__class__"),
        ],
        id="subclasses-walk",
    ),
    pytest.param(
        "x = getattr(items, '__globals__')",
        [
            f'Line 1: "getattr()" is not allowed in diagram scripts: {INSPECT}; '
            f"{HELPERS_HINT}"
        ],
        id="getattr",
    ),
    pytest.param(
        "x = eval('1')",
        [
            'Line 1: "eval()" is not allowed in diagram scripts: scripts cannot '
            f"run code built from strings; {HELPERS_HINT}"
        ],
        id="eval",
    ),
    pytest.param(
        "exec('x=1')",
        [
            'Line 1: "exec()" is not allowed in diagram scripts: scripts cannot '
            f"run code built from strings; {HELPERS_HINT}"
        ],
        id="exec",
    ),
    pytest.param(
        "x = compile('1', 'f', 'eval')",
        [
            'Line 1: "compile()" is not allowed in diagram scripts: scripts cannot '
            f"run code built from strings; {HELPERS_HINT}"
        ],
        id="compile",
    ),
    pytest.param(
        "x = globals()",
        [
            f'Line 1: "globals()" is not allowed in diagram scripts: {INSPECT}; '
            f"{HELPERS_HINT}"
        ],
        id="globals",
    ),
    pytest.param(
        "x = (lambda: 0).__code__",
        [underscore_attribute(1, "__code__")],
        id="lambda-code",
    ),
    pytest.param(
        "x = (i for i in []).gi_frame",
        [
            'Line 1: "gi_frame" is not allowed in diagram scripts: it reaches into '
            f"the interpreter's frames and code; {HELPERS_HINT}"
        ],
        id="generator-frame",
    ),
    pytest.param(
        "x = type(items)",
        [
            f'Line 1: "type()" is not allowed in diagram scripts: {INSPECT}; '
            f"{HELPERS_HINT}"
        ],
        id="type",
    ),
    pytest.param(
        "x = type('T', (), {})",
        [
            f'Line 1: "type()" is not allowed in diagram scripts: {INSPECT}; '
            f"{HELPERS_HINT}"
        ],
        id="type-new-class",
    ),
    pytest.param(
        "x = '{0.__class__}'.format(1)",
        [
            'Line 1: ".format()" is not allowed in diagram scripts: format strings '
            "can reach object internals; use an f-string instead"
        ],
        id="str-format",
    ),
    pytest.param(
        "x = str.format_map('{a.__class__}', {'a': 1})",
        [
            'Line 1: ".format_map()" is not allowed in diagram scripts: format '
            "strings can reach object internals; use an f-string instead"
        ],
        id="str-format-map",
    ),
    pytest.param(
        "x = f'{items.__class__}'",
        [underscore_attribute(1, "__class__")],
        id="f-string-attribute",
    ),
    pytest.param(
        "try:\n    1 / 0\nexcept Exception as e:\n    x = e.__traceback__",
        [underscore_attribute(4, "__traceback__")],
        id="traceback",
    ),
]


@pytest.mark.parametrize(("source", "problems"), ATTACKS)
def test_check_source_refuses_attack(source: str, problems: list[str]) -> None:
    assert check_source(source, "exec") == problems


@pytest.mark.parametrize(("source", "problems"), ATTACKS)
def test_engine_refuses_attack_at_run_time(source: str, problems: list[str]) -> None:
    workflow = _run_script_workflow(source)

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert caught.value.error_type == "ScriptRefusedError"
    assert str(caught.value).startswith("ScriptRefusedError: " + "; ".join(problems))
    assert "x" not in _script_task(workflow).data


def _is_expression(source: str) -> bool:
    try:
        ast.parse(source, mode="eval")
    except SyntaxError:
        return False
    return True


EXPRESSION_ATTACKS = [
    pytest.param(param.values[0].removeprefix("x = "), *param.values[1:], id=param.id)
    for param in ATTACKS
    if _is_expression(param.values[0].removeprefix("x = "))
]


def test_most_attacks_are_also_tried_as_expressions() -> None:
    assert len(EXPRESSION_ATTACKS) == len(ATTACKS) - 2


@pytest.mark.parametrize(("expression", "problems"), EXPRESSION_ATTACKS)
def test_engine_refuses_attack_in_an_expression(
    expression: str, problems: list[str]
) -> None:
    task = _finished_script_task()

    with pytest.raises(WorkflowTaskException) as caught:
        RestrictedScriptEngine().evaluate(task, expression)

    assert str(caught.value).startswith(
        f"Error evaluating expression '{expression}': ScriptRefusedError: "
        + "; ".join(problems)
    )


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import os", "ImportError: __import__ not found"),
        ("x = open('/etc/passwd')", "NameError: name 'open' is not defined"),
        ("x = getattr(items, 'x')", "NameError: name 'getattr' is not defined"),
        ("x = type(items)", "NameError: name 'type' is not defined"),
        ("x = globals()", "NameError: name 'globals' is not defined"),
        ("x = compile('1', 'f', 'eval')", "NameError: name 'compile' is not defined"),
        ("x = vars()", "NameError: name 'vars' is not defined"),
        (
            "x = '{0.__class__}'.format(1)",
            "NotImplementedError: Using the format*() methods of `str` is not safe",
        ),
        (
            "x = str.format('{0.__class__}', 1)",
            "NotImplementedError: Using the format*() methods of `str` is not safe",
        ),
        ("class T:\n    pass", "NameError: __build_class__ not found"),
        ("raise SystemExit", "NameError: name 'SystemExit' is not defined"),
    ],
)
def test_run_time_guards_hold_without_the_deploy_time_checks(
    monkeypatch: pytest.MonkeyPatch, source: str, error: str
) -> None:
    # Plain RestrictedPython lets these through at compile time; the
    # builtins and guards of the environment must still refuse them.
    monkeypatch.setattr(scripting, "DiagramScriptPolicy", RestrictingNodeTransformer)
    workflow = _run_script_workflow(source)

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith(error)


def test_run_time_error_names_type_text_and_line() -> None:
    workflow = _run_script_workflow("y = 1\nz = items[10]")

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith(
        "IndexError: list index out of range (line 2: 'z = items[10]')"
    )
    assert caught.value.line_number == 2


def test_error_with_a_non_text_argument_is_reported() -> None:
    workflow = _run_script_workflow("d = {}\nx = d[5]")

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith("KeyError: 5 (line 2: 'x = d[5]')")


def test_misspelt_attribute_is_reported_as_missing() -> None:
    workflow = _run_script_workflow("label = kind.lowr()")

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith(
        "AttributeError: 'str' object has no attribute 'lowr' "
        "(line 1: 'label = kind.lowr()')"
    )


def test_designer_can_raise_an_error_with_a_message() -> None:
    workflow = _run_script_workflow("raise ValueError('amount too large')")

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith("ValueError: amount too large (line 1")


def test_evaluate_error_names_expression_type_and_text() -> None:
    task = _finished_script_task()

    with pytest.raises(WorkflowTaskException) as caught:
        RestrictedScriptEngine().evaluate(task, "items[0] / 0")

    assert str(caught.value).startswith(
        "Error evaluating expression 'items[0] / 0': "
        "ZeroDivisionError: division by zero"
    )


def test_validate_raises_a_syntax_error_with_the_problem() -> None:
    engine = RestrictedScriptEngine()

    engine.validate("a > 1")
    with pytest.raises(SyntaxError, match='"__class__" is not allowed in diagram'):
        engine.validate("a.__class__")
    with pytest.raises(SyntaxError, match="Line 1: syntax error: invalid syntax"):
        engine.validate("> 5")


# --- through SpiffWorkflow ----------------------------------------------------

BPMN_NS = (
    'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
    'targetNamespace="http://example.org/tests"'
)

SCRIPT_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {ns} id="defs">
  <bpmn:process id="scripted" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="compute" />
    <bpmn:scriptTask id="compute" name="Compute" scriptFormat="python">
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="compute" targetRef="split" />
    <bpmn:exclusiveGateway id="split" default="to_low" />
    <bpmn:sequenceFlow id="to_high" sourceRef="split" targetRef="high">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">
        total &gt; 100 and kind.lower() == 'hardware'
      </bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_low" sourceRef="split" targetRef="low" />
    <bpmn:scriptTask id="high" scriptFormat="python">
      <bpmn:script>route = 'high'</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:scriptTask id="low" scriptFormat="python">
      <bpmn:script>route = 'low'</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="high" targetRef="end" />
    <bpmn:sequenceFlow id="f4" sourceRef="low" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""

DEFAULT_SCRIPT = """
total = 0
for price, quantity in lines:
    total += price * quantity
summary = {}
summary['count'] = len(lines)
"""


def _parse_process(bpmn: str, dmn: str | None = None) -> Any:
    parser = CamundaParser()
    parser.add_bpmn_str(bpmn.encode(), filename="test.bpmn")
    if dmn is not None:
        parser.add_dmn_str(dmn.encode(), filename="test.dmn")
    return parser


def _workflow(
    script: str, data: dict[str, Any], engine: RestrictedScriptEngine | None = None
) -> BpmnWorkflow:
    escaped = script.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    parser = _parse_process(SCRIPT_PROCESS.format(ns=BPMN_NS, script=escaped))
    workflow = BpmnWorkflow(
        parser.get_spec("scripted"), script_engine=engine or RestrictedScriptEngine()
    )
    workflow.get_next_task(spec_name="start").set_data(**data)
    return workflow


def _run_script_workflow(script: str) -> BpmnWorkflow:
    return _workflow(script, {"lines": [], "kind": "software", "items": [1]})


def _script_task(workflow: BpmnWorkflow) -> Any:
    return workflow.get_next_task(spec_name="compute")


def _finished_script_task() -> Any:
    workflow = _run_script_workflow(DEFAULT_SCRIPT)
    workflow.do_engine_steps()
    return _script_task(workflow)


def _completed_specs(workflow: BpmnWorkflow) -> set[str]:
    tasks = workflow.get_tasks(state=TaskState.COMPLETED)
    return {task.task_spec.name for task in tasks}


@pytest.mark.parametrize(
    ("lines", "kind", "total", "route"),
    [
        ([[60, 2], [1, 5]], "Hardware", 125, "high"),
        ([[60, 2], [1, 5]], "software", 125, "low"),
        ([[10, 1]], "hardware", 10, "low"),
    ],
)
def test_workflow_runs_script_and_gateway_in_the_sandbox(
    lines: list[list[int]], kind: str, total: int, route: str
) -> None:
    workflow = _workflow(DEFAULT_SCRIPT, {"lines": lines, "kind": kind})

    workflow.do_engine_steps()

    assert workflow.is_completed()
    assert workflow.data == {
        "lines": lines,
        "kind": kind,
        "total": total,
        "summary": {"count": len(lines)},
        "price": lines[-1][0],
        "quantity": lines[-1][1],
        "route": route,
    }
    other = "low" if route == "high" else "high"
    assert route in _completed_specs(workflow)
    assert other not in _completed_specs(workflow)


def test_workflow_script_importing_os_fails_with_the_reason() -> None:
    workflow = _workflow("import os\nos.system('true')", {"lines": []})

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith(
        'ScriptRefusedError: Line 1: "import os" is not allowed in diagram '
        f"scripts: imports are refused; {HELPERS_HINT}"
    )
    assert caught.value.task_spec.name == "compute"
    assert caught.value.line_number == 1
    assert not workflow.is_completed()


DECISION_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {ns} id="defs">
  <bpmn:process id="decided" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="decide" />
    <bpmn:businessRuleTask id="decide" camunda:decisionRef="approvals" />
    <bpmn:sequenceFlow id="f2" sourceRef="decide" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""

DECISION_TABLE = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/"
    id="approvals_defs" name="Approvals" namespace="http://example.org/tests">
  <decision id="approvals" name="Approval steps">
    <decisionTable id="table" hitPolicy="FIRST">
      <input id="in_kind" label="Token kind">
        <inputExpression id="in_kind_expr" typeRef="string">
          <text>kind.lower()</text>
        </inputExpression>
      </input>
      <input id="in_days" label="Days left">
        <inputExpression id="in_days_expr" typeRef="integer">
          <text>(expires - today).days</text>
        </inputExpression>
      </input>
      <output id="out_steps" label="Approval steps" name="approval_steps"
          typeRef="integer" />
      <output id="out_reason" label="Reason" name="reason" typeRef="string" />
      <rule id="r1">
        <inputEntry id="r1_kind"><text>"hardware"</text></inputEntry>
        <inputEntry id="r1_days"><text>&lt;= 30</text></inputEntry>
        <outputEntry id="r1_steps"><text>1</text></outputEntry>
        <outputEntry id="r1_reason"><text>f"renewal of {kind}"</text></outputEntry>
      </rule>
      <rule id="r2">
        <inputEntry id="r2_kind"><text>"hardware"</text></inputEntry>
        <inputEntry id="r2_days"><text></text></inputEntry>
        <outputEntry id="r2_steps"><text>len(approvers)</text></outputEntry>
        <outputEntry id="r2_reason"><text>"new hardware"</text></outputEntry>
      </rule>
      <rule id="r3">
        <inputEntry id="r3_kind"><text></text></inputEntry>
        <inputEntry id="r3_days"><text></text></inputEntry>
        <outputEntry id="r3_steps"><text>0</text></outputEntry>
        <outputEntry id="r3_reason"><text>"software"</text></outputEntry>
      </rule>
    </decisionTable>
  </decision>
</definitions>
"""


@pytest.mark.parametrize(
    ("kind", "expires", "steps", "reason"),
    [
        ("Hardware", date(2024, 1, 20), 1, "renewal of Hardware"),
        ("hardware", date(2024, 6, 1), 2, "new hardware"),
        ("software", date(2024, 1, 20), 0, "software"),
    ],
)
def test_decision_table_runs_in_the_sandbox(
    kind: str, expires: date, steps: int, reason: str
) -> None:
    parser = _parse_process(DECISION_PROCESS.format(ns=BPMN_NS), DECISION_TABLE)
    workflow = BpmnWorkflow(
        parser.get_spec("decided"), script_engine=RestrictedScriptEngine()
    )
    workflow.get_next_task(spec_name="start").set_data(
        kind=kind,
        expires=expires,
        today=date(2024, 1, 1),
        approvers=["alice", "bob"],
    )

    workflow.do_engine_steps()

    assert workflow.is_completed()
    assert workflow.data["approval_steps"] == steps
    assert workflow.data["reason"] == reason


def test_decision_table_cell_cannot_escape() -> None:
    table = DECISION_TABLE.replace("len(approvers)", "().__class__")
    parser = _parse_process(DECISION_PROCESS.format(ns=BPMN_NS), table)
    workflow = BpmnWorkflow(
        parser.get_spec("decided"), script_engine=RestrictedScriptEngine()
    )
    workflow.get_next_task(spec_name="start").set_data(
        kind="hardware", expires=date(2024, 6, 1), today=date(2024, 1, 1)
    )

    with pytest.raises(WorkflowTaskException) as caught:
        workflow.do_engine_steps()

    assert str(caught.value).startswith(
        "Error evaluating expression '().__class__': ScriptRefusedError: "
        + underscore_attribute(1, "__class__")
    )


TIMER_AND_LOOP_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {ns} id="defs">
  <bpmn:process id="looped" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pause" />
    <bpmn:intermediateCatchEvent id="pause">
      <bpmn:timerEventDefinition id="pause_timer">
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">
          f"PT{{seconds}}S"
        </bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="each" />
    <bpmn:scriptTask id="each" scriptFormat="python">
      <bpmn:multiInstanceLoopCharacteristics isSequential="true">
        <bpmn:loopCardinality>len(items) + 1</bpmn:loopCardinality>
        <bpmn:completionCondition>rounds &gt;= 2</bpmn:completionCondition>
      </bpmn:multiInstanceLoopCharacteristics>
      <bpmn:script>rounds = rounds + 1</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="each" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_timer_and_multi_instance_expressions_run_in_the_sandbox() -> None:
    parser = _parse_process(TIMER_AND_LOOP_PROCESS.format(ns=BPMN_NS))
    workflow = BpmnWorkflow(
        parser.get_spec("looped"), script_engine=RestrictedScriptEngine()
    )
    workflow.get_next_task(spec_name="start").set_data(
        items=[1, 2], seconds=0, rounds=0
    )

    workflow.do_engine_steps()
    workflow.refresh_waiting_tasks()
    workflow.do_engine_steps()

    assert workflow.is_completed()
    loop = workflow.get_next_task(spec_name="each", state=TaskState.COMPLETED)
    assert loop.internal_data["cardinality"] == 3
    children = workflow.get_tasks(spec_name="each [child]", state=TaskState.COMPLETED)
    assert len(children) == 2
