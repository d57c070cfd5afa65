"""Checks a deployment before anything of it is stored.

Parsing alone accepts diagrams that fail later, in production, on somebody's
request: a user task nobody can be routed to, a condition with a typo, a
script that imports ``os``, a decision table that answers "one" where a number
is expected. Everything here runs at deploy time and reports each problem with
its file, line and BPMN or DMN element id.

The product can ask for more than the types of a decision's outputs: with
:func:`register_output_values` it names the values an output may take, and
every literal output entry of that decision is checked against them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException

from . import services
from .errors import Problem
from .identity import ROLES, role_of_lane
from .scripting import RestrictedEnvironment, check_source, is_literal
from .spiff import ProvisioningParser

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
DMN_NAMESPACES = (
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
)
NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}

_xml_parser = etree.XMLParser(
    resolve_entities=False, no_network=True, remove_comments=False, huge_tree=False
)
_bpmn_validator: BpmnValidator | None = None

# A routing attribute holding "${...}" is evaluated per task, as
# engine.instances does; anything else is a literal name.
_ROUTING_EXPRESSION = re.compile(r"^\$\{\s*(.+?)\s*\}$")

# Expressions SpiffWorkflow evaluates besides conditions, scripts and timers,
# with the words a designer knows them by.
_OTHER_EXPRESSIONS = (
    ("bpmn:multiInstanceLoopCharacteristics/bpmn:loopCardinality", "loop cardinality"),
    (
        "bpmn:multiInstanceLoopCharacteristics/bpmn:completionCondition",
        "completion condition",
    ),
    ("bpmn:standardLoopCharacteristics/bpmn:loopCondition", "loop condition"),
    ("bpmn:adHocSubProcess/bpmn:completionCondition", "completion condition"),
    ("bpmn:conditionalEventDefinition/bpmn:condition", "event condition"),
)

# What a literal output entry must be for each DMN type (typeRef), and an
# example of such a value for the message.
_OUTPUT_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "integer": (int, "an integer such as 2"),
    "long": (int, "an integer such as 2"),
    "double": ((int, float), "a number such as 2.5"),
    "number": ((int, float), "a number such as 2.5"),
    "boolean": (bool, "True or False"),
    "string": (str, 'a quoted text such as "hardware"'),
}
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a text"}


@dataclass(frozen=True)
class OutputValues:
    """The values one output of one decision may take, and why."""

    allowed: Collection[Any]
    reason: str

    def describe(self) -> str:
        """Say which values are allowed: "a value from 0 to 4", "one of: 'a'"."""
        allowed = self.allowed
        if isinstance(allowed, range) and allowed.step == 1 and len(allowed) > 1:
            return f"a value from {allowed.start} to {allowed[-1]}"
        return "one of: " + ", ".join(repr(value) for value in allowed)


_output_values: dict[tuple[str, str], OutputValues] = {}
_literals = RestrictedEnvironment(cache_size=256)


def register_output_values(
    decision_id: str, output: str, allowed: Collection[Any], reason: str
) -> None:
    """Refuse deployments whose decision gives an output a value not allowed.

    :param decision_id: the id of the DMN decision, e.g. ``"workflow_policy"``.
    :param output: the name of the output clause, e.g. ``"approval_steps"``.
    :param allowed: the values it may take, e.g. ``range(0, 5)``.
    :param reason: why, in a few words the designer will read in the
        refusal, e.g. ``"a request takes zero to four approval steps"``.

    Only literal output entries are checked; an expression over the task data
    has its value only when a request runs.
    """
    _output_values[(decision_id, output)] = OutputValues(allowed, reason)


def unregister_output_values(decision_id: str, output: str) -> None:
    _output_values.pop((decision_id, output), None)


def registered_output_values() -> dict[tuple[str, str], OutputValues]:
    return dict(_output_values)


def _validator() -> BpmnValidator:
    global _bpmn_validator
    if _bpmn_validator is None:
        _bpmn_validator = BpmnValidator()
    return _bpmn_validator


@dataclass
class SourceFile:
    """A file offered for deployment, with what was learned while checking it."""

    filename: str
    content: bytes
    kind: str = ""
    tree: etree._Element | None = None
    process_ids: list[str] = field(default_factory=list)
    executable_ids: list[str] = field(default_factory=list)
    decision_ids: list[str] = field(default_factory=list)


def check_files(files: Iterable[SourceFile], max_bytes: int) -> list[Problem]:
    """Check each file on its own: type, size, XML, schema, ids, expressions."""
    problems: list[Problem] = []
    for source in files:
        problems.extend(_check_file(source, max_bytes))
    return problems


def _check_file(source: SourceFile, max_bytes: int) -> list[Problem]:
    name = source.filename
    lower = name.lower()
    if lower.endswith(".bpmn") or lower.endswith(".bpmn20.xml"):
        source.kind = "bpmn"
    elif lower.endswith(".dmn") or lower.endswith(".dmn11.xml"):
        source.kind = "dmn"
    else:
        return [
            Problem(
                name,
                "only .bpmn and .dmn files can be deployed; rename it "
                "or leave it out of the deployment.",
            )
        ]
    if len(source.content) > max_bytes:
        return [
            Problem(
                name,
                f"the file is {len(source.content):,} bytes, more than "
                f"the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES); split "
                "the model or raise the limit.",
            )
        ]
    if not source.content.strip():
        return [
            Problem(
                name, "the file is empty; export the diagram again from the modeler."
            )
        ]
    try:
        source.tree = etree.fromstring(source.content, parser=_xml_parser)
    except etree.XMLSyntaxError as err:
        return [
            Problem(
                name,
                f"the file is not well-formed XML: {_without_position(err.msg)}; "
                "open and save it again in the modeler.",
                line=err.lineno,
            )
        ]
    if source.kind == "bpmn":
        return _check_bpmn(source)
    return _check_dmn(source)


def _without_position(message: str) -> str:
    """Drop lxml's ", line N, column M": the problem already carries the line."""
    return re.sub(r",? line \d+, column \d+$", "", message.strip())


def _check_bpmn(source: SourceFile) -> list[Problem]:
    name, tree = source.filename, source.tree
    if etree.QName(tree).namespace != BPMN_NS:
        return [
            Problem(
                name,
                "this is not a BPMN 2.0 file (the root element must be "
                "bpmn:definitions); save it as BPMN from the modeler.",
                line=1,
            )
        ]
    try:
        _validator().validate(tree, name)
    except ValidationException as err:
        return [_schema_problem(source, err)]

    problems: list[Problem] = []
    for process in tree.iterfind("bpmn:process", NS):
        pid = process.get("id")
        source.process_ids.append(pid)
        if process.get("isExecutable") == "true":
            source.executable_ids.append(pid)
    if not source.executable_ids:
        problems.append(
            Problem(
                name,
                "the file holds no executable process; tick "
                "'Executable' on the process in the modeler "
                '(isExecutable="true").',
                line=1,
            )
        )

    # As SpiffWorkflow reads them: a node belongs to the innermost lane that
    # lists it, and the lane counts by its name.
    lanes: dict[str, etree._Element] = {}
    for lane in tree.iterfind(".//bpmn:lane", NS):
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            lanes[(ref.text or "").strip()] = lane

    for task in tree.iterfind(".//bpmn:userTask", NS):
        problems.extend(_routing(source, task, lanes))

    for flow in tree.iterfind(".//bpmn:sequenceFlow", NS):
        condition = flow.find("bpmn:conditionExpression", NS)
        if condition is not None and (condition.text or "").strip():
            problems.extend(
                _expression(source, flow, condition.text, "eval", "condition")
            )

    for task in tree.iterfind(".//bpmn:scriptTask", NS):
        script_format = (task.get("scriptFormat") or "python").lower()
        if script_format not in ("python", "py"):
            problems.append(
                _at(
                    source,
                    task,
                    f"script format '{script_format}' is "
                    "not supported; write the script in Python.",
                )
            )
            continue
        script = task.find("bpmn:script", NS)
        if script is None or not (script.text or "").strip():
            problems.append(
                _at(
                    source,
                    task,
                    "the script task has no script; write one or use a plain task.",
                )
            )
            continue
        problems.extend(_expression(source, task, script.text, "exec", "script"))

    for path, what in _OTHER_EXPRESSIONS:
        for node in tree.iterfind(f".//{path}", NS):
            if (node.text or "").strip():
                owner = _owner(node)
                problems.extend(
                    _expression(source, owner, node.text, "eval", what, node=node)
                )
    for loop in tree.iterfind(".//bpmn:multiInstanceLoopCharacteristics", NS):
        problems.extend(_loop_variables(source, loop))

    for kind in ("timeDuration", "timeDate", "timeCycle"):
        for timer in tree.iterfind(f".//bpmn:{kind}", NS):
            event = timer.getparent().getparent()
            problems.extend(_timer(source, event, kind, timer.text or ""))

    for task in tree.iterfind(".//bpmn:serviceTask", NS):
        if task.get(f"{{{CAMUNDA_NS}}}type") != "external":
            continue
        topic = task.get(f"{{{CAMUNDA_NS}}}topic")
        if not topic:
            problems.append(
                _at(
                    source,
                    task,
                    "the external service task has no "
                    "topic; set camunda:topic to one of: "
                    f"{', '.join(sorted(services.topics())) or 'none'}.",
                )
            )
        elif topic not in services.topics():
            problems.append(
                _at(
                    source,
                    task,
                    f"no handler is registered for topic "
                    f"'{topic}'; use one of: "
                    f"{', '.join(sorted(services.topics())) or 'none'}.",
                )
            )
    return problems


def _routing(source: SourceFile, task, lanes: dict[str, Any]) -> list[Problem]:
    def camunda(name):
        return (task.get(f"{{{CAMUNDA_NS}}}{name}") or "").strip()

    groups = [g.strip() for g in camunda("candidateGroups").split(",") if g.strip()]
    users = [u.strip() for u in camunda("candidateUsers").split(",") if u.strip()]
    assignee = camunda("assignee")
    if not groups and not users and not assignee:
        lane = lanes.get(task.get("id"))
        if lane is None:
            return [
                _at(
                    source,
                    task,
                    "this user task cannot be routed to anyone; put it in a lane "
                    "or set candidate groups, candidate users or an assignee.",
                )
            ]
        return _lane_role(source, task, lane)

    problems = []
    for attribute, values in (
        ("candidate groups", groups),
        ("candidate users", users),
        ("assignee", [assignee] if assignee else []),
        ("due date", [camunda("dueDate")] if camunda("dueDate") else []),
    ):
        for value in values:
            match = _ROUTING_EXPRESSION.match(value)
            if match is not None:
                problems.extend(
                    _expression(
                        source, task, match.group(1), "eval", f"{attribute} expression"
                    )
                )
            elif attribute == "candidate groups" and value not in ROLES:
                problems.append(
                    _at(
                        source,
                        task,
                        f"candidate group '{value}' is not a role, so nobody "
                        f"could work this task; use one of: {', '.join(ROLES)}, "
                        "or an expression such as ${group}.",
                    )
                )
    return problems


def _lane_role(source: SourceFile, task, lane) -> list[Problem]:
    role = role_of_lane(lane.get("name"))
    if role in ROLES:
        return []
    lane_names = ", ".join(r.replace("_", " ").title() for r in ROLES)
    if role is None:
        text = f"lane '{lane.get('id')}' has no name"
    else:
        text = f"lane '{lane.get('name')}' stands for no role"
    return [
        _at(
            source,
            task,
            f"{text}, so nobody could work this user task; name the lane after "
            f"a role ({lane_names}) or set candidate groups on the task.",
        )
    ]


def _owner(node):
    """Return the BPMN element an expression belongs to, for the message."""
    owner = node.getparent()
    while owner.get("id") is None or etree.QName(owner).localname in (
        "multiInstanceLoopCharacteristics",
        "standardLoopCharacteristics",
        "conditionalEventDefinition",
    ):
        if owner.getparent() is None:
            break
        owner = owner.getparent()
    return owner


def _loop_variables(source: SourceFile, loop) -> list[Problem]:
    # SpiffWorkflow reads these as names of task data, never as expressions:
    # "${approvers}" would look for a variable of that name and fail.
    problems = []
    for attribute in ("collection", "elementVariable"):
        value = loop.get(f"{{{CAMUNDA_NS}}}{attribute}")
        if value is not None and not value.isidentifier():
            problems.append(
                _at(
                    source,
                    _owner(loop),
                    f"camunda:{attribute} '{value}' is not the name of a "
                    "variable; write the bare name of a task data variable, "
                    "such as approvers, without ${} or other expressions.",
                )
            )
    return problems


def _schema_problem(source: SourceFile, err: ValidationException) -> Problem:
    # lxml spells every element with its full namespace URI; a designer knows
    # them by the prefix the modeler writes.
    text = str(err).replace(f"{{{BPMN_NS}}}", "bpmn:").strip().rstrip(".").strip()
    line = err.line_number or None
    element_id = None
    if line:
        element_id = next(
            (e.get("id") for e in source.tree.iter() if e.sourceline == line),
            None,
        )
    return Problem(
        source.filename,
        f"the file does not follow the BPMN 2.0 schema: {text}; correct it in "
        "the modeler.",
        line=line,
        element_id=element_id,
    )


def _check_dmn(source: SourceFile) -> list[Problem]:
    name, tree = source.filename, source.tree
    namespace = etree.QName(tree).namespace
    if namespace not in DMN_NAMESPACES:
        return [
            Problem(
                name,
                "this is not a DMN file (the root element must be "
                "dmn:definitions); save it as DMN from the modeler.",
                line=1,
            )
        ]
    ns = {"dmn": namespace}
    problems: list[Problem] = []
    for decision in tree.iterfind("dmn:decision", ns):
        source.decision_ids.append(decision.get("id"))
        for node in decision.iterfind(".//dmn:inputExpression/dmn:text", ns):
            problems.extend(
                _expression(
                    source,
                    decision,
                    node.text or "",
                    "eval",
                    "input expression",
                    node=node,
                )
            )
        for entry in decision.iterfind(".//dmn:inputEntry/dmn:text", ns):
            problems.extend(_dmn_entry(source, decision, entry))
        for entry in decision.iterfind(".//dmn:outputEntry/dmn:text", ns):
            text = (entry.text or "").strip()
            if text:
                problems.extend(
                    _expression(
                        source, decision, text, "eval", "output entry", node=entry
                    )
                )
        for table in decision.iterfind("dmn:decisionTable", ns):
            problems.extend(_output_entries(source, decision, table, ns))
    if not source.decision_ids:
        problems.append(
            Problem(
                name,
                "the file holds no decision; add a decision table in the modeler.",
                line=1,
            )
        )
    return problems


def _output_entries(source: SourceFile, decision, table, ns) -> list[Problem]:
    """Check each literal output entry against its output's type and values."""
    outputs = list(table.iterfind("dmn:output", ns))
    problems = []
    for rule in table.iterfind("dmn:rule", ns):
        entries = rule.iterfind("dmn:outputEntry/dmn:text", ns)
        for output, entry in zip(outputs, entries, strict=False):
            problem = _output_entry(decision.get("id"), output, entry)
            if problem is not None:
                problems.append(
                    Problem(
                        source.filename,
                        problem,
                        line=entry.sourceline,
                        element_id=rule.get("id"),
                    )
                )
    return problems


def _output_entry(decision_id: str, output, entry) -> str | None:
    text = (entry.text or "").strip()
    if not text or check_source(text, "eval") or not is_literal(text):
        return None
    name = output.get("name") or output.get("label") or output.get("id")
    try:
        value = _literals.evaluate(text, {})
    except Exception as err:  # noqa: BLE001 - any failure is the designer's
        return (
            f"output entry {text} of '{name}' fails: {type(err).__name__}: {err}; "
            "write a value that can be computed, or fix it in the modeler."
        )

    type_ref = (output.get("typeRef") or "").lower()
    if type_ref in _OUTPUT_TYPES:
        expected, example = _OUTPUT_TYPES[type_ref]
        # bool is an int in Python, but True is no answer to "how many".
        wrong_bool = isinstance(value, bool) and type_ref != "boolean"
        if wrong_bool or not isinstance(value, expected):
            actual = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
            return (
                f"output entry {text} of '{name}' is {actual}, but the output's "
                f"type is {type_ref}; write {example}, or change the type of "
                "the output in the modeler."
            )

    values = _output_values.get((decision_id, name))
    if values is not None and value not in values.allowed:
        return (
            f"output entry {text} of '{name}' is not allowed: {values.reason}; "
            f"write {values.describe()}."
        )
    return None


def _dmn_entry(source: SourceFile, decision, entry) -> list[Problem]:
    text = (entry.text or "").strip()
    if not text or text == "-":
        return []
    candidate = re.sub(r"\?", "dmninputexpr", text)
    if not check_source(candidate, "eval"):
        return []
    problems = check_source(f"v {candidate}", "eval")
    if not problems:
        return []
    return [
        Problem(
            source.filename,
            f"input entry {text!r} does not compile: "
            f'{problems[0]}; write a value such as "hardware", a '
            "comparison such as '> 2', or '-' for any.",
            line=entry.sourceline,
            element_id=decision.get("id"),
        )
    ]


def _expression(source, element, text, mode, what, node=None) -> list[Problem]:
    problems = check_source(text, mode)
    line = (node if node is not None else element).sourceline
    return [
        Problem(
            source.filename,
            f"the {what} is refused: {message.rstrip('.')}; fix the {what} in "
            "the modeler and deploy again.",
            line=line,
            element_id=element.get("id"),
        )
        for message in problems
    ]


def _timer(source, event, kind, text) -> list[Problem]:
    text = text.strip()
    if not text:
        return [
            _at(
                source,
                event,
                f"the timer has an empty {kind}; give an "
                'expression such as "PT1H" or a variable name.',
            )
        ]
    problems = _expression(source, event, text, "eval", f"{kind} expression")
    if problems:
        return problems
    literal = text.strip("\"'") if text[:1] in "\"'" and text[-1:] == text[:1] else None
    if literal is None:
        return []
    try:
        if kind == "timeDuration":
            TimerEventDefinition.parse_iso_duration(literal)
        elif kind == "timeDate":
            TimerEventDefinition.get_datetime(literal)
        else:
            TimerEventDefinition.parse_iso_recurring_interval(literal)
    except Exception:  # noqa: BLE001 - SpiffWorkflow raises assorted types here
        example = {
            "timeDuration": '"P2D"',
            "timeDate": '"2027-01-31T09:00:00Z"',
            "timeCycle": '"R3/PT10H"',
        }[kind]
        return [
            _at(
                source,
                event,
                f"{literal!r} is not a valid ISO 8601 {kind}; "
                f"write for example {example}.",
            )
        ]
    return []


def _at(source: SourceFile, element, message: str) -> Problem:
    return Problem(
        source.filename, message, line=element.sourceline, element_id=element.get("id")
    )


def build_parser(
    files: Iterable[SourceFile],
) -> tuple[ProvisioningParser, list[Problem]]:
    """Parse checked files together; report unresolved references as problems."""
    parser = ProvisioningParser()
    problems: list[Problem] = []
    files = list(files)
    decisions = {d for f in files for d in f.decision_ids}
    processes = {p for f in files for p in f.process_ids}

    for source in files:
        if source.kind != "bpmn":
            continue
        for task in source.tree.iterfind(".//bpmn:businessRuleTask", NS):
            ref = task.get(f"{{{CAMUNDA_NS}}}decisionRef")
            if not ref:
                problems.append(
                    _at(
                        source,
                        task,
                        "the business rule task has no "
                        "decision reference; set camunda:decisionRef.",
                    )
                )
            elif ref not in decisions:
                problems.append(
                    _at(
                        source,
                        task,
                        f"decision '{ref}' is not deployed "
                        "and not part of this deployment; deploy its "
                        ".dmn file too.",
                    )
                )
        for call in source.tree.iterfind(".//bpmn:callActivity", NS):
            ref = call.get("calledElement")
            if not ref or ref not in processes:
                problems.append(
                    _at(
                        source,
                        call,
                        f"called process '{ref}' is not "
                        "deployed and not part of this deployment; "
                        "deploy its .bpmn file too.",
                    )
                )
    if problems:
        return parser, problems

    for source in sorted(files, key=lambda f: f.kind != "dmn"):
        try:
            if source.kind == "dmn":
                parser.add_dmn_xml(source.tree, filename=source.filename)
            else:
                parser.add_bpmn_xml(source.tree, filename=source.filename)
        except ValidationException as err:
            problems.append(_from_spiff(err, source.filename))
        except SpiffWorkflowException as err:
            problems.append(Problem(source.filename, str(err)))
    return parser, problems


def _from_spiff(err: ValidationException, filename: str) -> Problem:
    message = str(err).rstrip(".")
    return Problem(
        err.file_name or filename,
        f"{message}.",
        line=err.line_number or None,
        element_id=err.id or None,
    )


def spiff_problem(err: Exception, filename: str) -> Problem:
    if isinstance(err, ValidationException):
        return _from_spiff(err, filename)
    return Problem(filename, str(err))
