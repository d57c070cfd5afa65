"""Checks a deployment before anything of it is stored.

Parsing alone accepts diagrams that fail later, in production, on somebody's
request: a user task nobody can be routed to, a condition with a typo, a
script that imports ``os``. Everything here runs at deploy time and reports
each problem with its file, line and BPMN element id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException

from . import services
from .errors import Problem
from .scripting import check_source
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

    lanes: dict[str, str] = {}
    for lane in tree.iterfind(".//bpmn:lane", NS):
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            lanes[(ref.text or "").strip()] = lane.get("name") or lane.get("id")

    for task in tree.iterfind(".//bpmn:userTask", NS):
        routed = (
            task.get(f"{{{CAMUNDA_NS}}}candidateGroups")
            or task.get(f"{{{CAMUNDA_NS}}}candidateUsers")
            or task.get(f"{{{CAMUNDA_NS}}}assignee")
        )
        if not routed and task.get("id") not in lanes:
            problems.append(
                _at(
                    source,
                    task,
                    "this user task cannot be routed to "
                    "anyone; put it in a lane or set candidate groups, candidate users "
                    "or an assignee.",
                )
            )

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
    if not source.decision_ids:
        problems.append(
            Problem(
                name,
                "the file holds no decision; add a decision table in the modeler.",
                line=1,
            )
        )
    return problems


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
            f"the {what} is refused: {message}",
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
