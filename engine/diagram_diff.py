"""What changed between two versions of a process diagram.

A pure function over two BPMN documents: it compares the flow elements of
one process by id and reports the elements added, removed and changed, with
each change said in words ("name 'Approve' -> 'Approve request'"). Layout
(the diagram interchange) is ignored: moving a shape is not a change of the
process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}

ACTIVITIES = {
    "task",
    "userTask",
    "serviceTask",
    "scriptTask",
    "businessRuleTask",
    "sendTask",
    "receiveTask",
    "manualTask",
    "callActivity",
    "subProcess",
}
ROUTING = ("candidateGroups", "candidateUsers", "assignee", "dueDate", "topic")
ROUTING += ("decisionRef", "type", "formKey")

_parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


@dataclass(frozen=True)
class Element:
    """A flow element as far as a diff cares: id, kind, name, lane, details."""

    id: str
    kind: str
    name: str
    lane: str = ""
    details: tuple[tuple[str, str], ...] = ()

    @property
    def is_task(self) -> bool:
        return self.kind in ACTIVITIES

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


@dataclass
class Change:
    element: Element
    changes: list[str]


@dataclass
class DiagramDiff:
    added: list[Element] = field(default_factory=list)
    removed: list[Element] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def tasks_only(self) -> DiagramDiff:
        """Return the part of the diff about tasks (activities)."""
        return DiagramDiff(
            [e for e in self.added if e.is_task],
            [e for e in self.removed if e.is_task],
            [c for c in self.changed if c.element.is_task],
        )


class DiagramUnreadable(ValueError):
    """A version's BPMN could not be read for comparison."""


def diff_processes(
    old_xml: bytes | str, new_xml: bytes | str, process_id: str | None = None
) -> DiagramDiff:
    """Compare the process ``process_id`` (default: the first) in two documents.

    :returns: the elements added, removed and changed, ordered by id.
    :raises DiagramUnreadable: a document is not BPMN XML or lacks the process.
    """
    old = _elements(old_xml, process_id, "the older version")
    new = _elements(new_xml, process_id, "the newer version")
    result = DiagramDiff()
    for element_id in sorted(new.keys() - old.keys()):
        result.added.append(new[element_id])
    for element_id in sorted(old.keys() - new.keys()):
        result.removed.append(old[element_id])
    for element_id in sorted(old.keys() & new.keys()):
        changes = _compare(old[element_id], new[element_id])
        if changes:
            result.changed.append(Change(new[element_id], changes))
    return result


def _elements(xml: bytes | str, process_id: str | None, which: str):
    data = xml.encode() if isinstance(xml, str) else xml
    try:
        root = etree.fromstring(data, _parser)
    except etree.XMLSyntaxError as err:
        raise DiagramUnreadable(f"{which} is not readable XML: {err}") from None
    processes = root.findall("bpmn:process", NS)
    if process_id is not None:
        processes = [p for p in processes if p.get("id") == process_id]
    if not processes:
        wanted = f"process '{process_id}'" if process_id else "a process"
        raise DiagramUnreadable(f"{which} has no {wanted}.")
    process = processes[0]

    lanes = {}
    for lane in process.iter(f"{{{BPMN_NS}}}lane"):
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            lanes[(ref.text or "").strip()] = lane.get("name") or lane.get("id")

    elements = {}
    for node in process.iter():
        if not isinstance(node.tag, str) or not node.tag.startswith(f"{{{BPMN_NS}}}"):
            continue
        kind = etree.QName(node).localname
        element_id = node.get("id")
        if not element_id or kind in ("process", "lane", "laneSet", "flowNodeRef"):
            continue
        if not _is_flow_element(kind):
            continue
        elements[element_id] = Element(
            id=element_id,
            kind=kind,
            name=(node.get("name") or "").strip(),
            lane=lanes.get(element_id, ""),
            details=tuple(_details(node, kind)),
        )
    return elements


def _is_flow_element(kind: str) -> bool:
    return (
        kind in ACTIVITIES
        or kind.endswith("Event")
        or kind.endswith("Gateway")
        or kind == "sequenceFlow"
    )


def _details(node, kind: str):
    for name in ROUTING:
        value = node.get(f"{{{CAMUNDA_NS}}}{name}")
        if value:
            yield (name, value)
    if kind == "sequenceFlow":
        yield ("from", node.get("sourceRef", ""))
        yield ("to", node.get("targetRef", ""))
        condition = node.find("bpmn:conditionExpression", NS)
        if condition is not None:
            yield ("condition", (condition.text or "").strip())
    if kind == "callActivity" and node.get("calledElement"):
        yield ("called process", node.get("calledElement"))
    script = node.find("bpmn:script", NS)
    if script is not None:
        yield ("script", (script.text or "").strip())
    for timer in node.iter(f"{{{BPMN_NS}}}timerEventDefinition"):
        for child in timer:
            if isinstance(child.tag, str):
                yield (
                    f"timer {etree.QName(child).localname}",
                    (child.text or "").strip(),
                )
    if node.get("attachedToRef"):
        yield ("attached to", node.get("attachedToRef"))
    if node.get("cancelActivity") is not None:
        yield ("interrupting", node.get("cancelActivity"))
    for form_field in node.iter(f"{{{CAMUNDA_NS}}}formField"):
        yield (f"form field {form_field.get('id')}", _describe_field(form_field))


def _describe_field(form_field) -> str:
    parts = [form_field.get("type") or "string", form_field.get("label") or ""]
    constraints = [
        c.get("name") + (f"={c.get('config')}" if c.get("config") else "")
        for c in form_field.iter(f"{{{CAMUNDA_NS}}}constraint")
    ]
    if constraints:
        parts.append("[" + ", ".join(constraints) + "]")
    options = [v.get("id") for v in form_field.iter(f"{{{CAMUNDA_NS}}}value")]
    if options:
        parts.append("options " + "/".join(o or "" for o in options))
    return " ".join(p for p in parts if p)


def _compare(old: Element, new: Element) -> list[str]:
    changes = []
    if old.kind != new.kind:
        changes.append(f"kind {old.kind} -> {new.kind}")
    if old.name != new.name:
        changes.append(f"name '{old.name}' -> '{new.name}'")
    if old.lane != new.lane:
        changes.append(f"lane '{old.lane}' -> '{new.lane}'")
    before, after = dict(old.details), dict(new.details)
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            changes.append(f"{key} added: '{after[key]}'")
        elif key not in after:
            changes.append(f"{key} removed (was '{before[key]}')")
        elif before[key] != after[key]:
            changes.append(f"{key} '{before[key]}' -> '{after[key]}'")
    return changes
