"""Check the shipped process models and the workflow policy.

The diagrams are parsed and run in memory with SpiffWorkflow's plain
CamundaParser, the way the engine runs them but without a database, and their
diagram interchange is checked so that bpmn-js and Camunda Modeler draw them.
"""

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers_browser import launch_chromium
from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.specs.defaults import EndEvent, ServiceTask
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.util.task import TaskState

BPMN_DIR = Path(__file__).resolve().parent.parent / "bpmn"
POLICY_FILE = BPMN_DIR / "workflow_policy.dmn"

PROCESS_IDS = [
    "new_token",
    "replace_expiring_token",
    "replace_lost_token",
    "ondemand_tokencode",
    "group_membership",
    "new_account",
]
TOKEN_PROCESS_IDS = PROCESS_IDS[:3]

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
    "dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "dmndi": "https://www.omg.org/spec/DMN/20191111/DMNDI/",
}
CAMUNDA = f"{{{NS['camunda']}}}"

# Children of a process that are not flow nodes.
NOT_FLOW_NODES = {
    "laneSet",
    "sequenceFlow",
    "documentation",
    "extensionElements",
    "textAnnotation",
    "association",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
}
LANES = ["User", "Request Approver", "Token Distributor", "Provisioning System"]

HARDWARE_DELIVERY = {
    "serial_number": "000123456789",
    "shipping_address": "1 Rue de la Paix, Paris",
    "carrier": "dhl",
    "tracking_number": "JD0146000033",
}
SOFTWARE_DELIVERY = {"delivery_method": "activation_email"}


# --------------------------------------------------------------------- helpers


def bpmn_path(process_id: str) -> Path:
    """Return the file that holds a process model."""
    return BPMN_DIR / f"{process_id}.bpmn"


def make_parser(policy: bytes | None = None) -> CamundaParser:
    """Return a validating parser loaded with every diagram and a policy."""
    parser = CamundaParser(validator=BpmnValidator())
    for process_id in PROCESS_IDS:
        parser.add_bpmn_file(str(bpmn_path(process_id)))
    if policy is None:
        parser.add_dmn_file(str(POLICY_FILE))
    else:
        parser.add_dmn_str(policy, filename="policy-under-test.dmn")

    return parser


@pytest.fixture(scope="module")
def parser() -> CamundaParser:
    return make_parser()


def start_data(request_type: str, **overrides) -> dict:
    """Return the variables the application sets when a request starts."""
    data = {
        "request_type": request_type,
        "token_class": "hardware",
        "security_domain": "acme/emea/paris",
        "requester": "jdoe",
        "token_model": "SID700",
        "shipping_address": "",
        "justification": "Starting in the Paris office",
        "group_name": "",
        "reminder_after": "P2D",
        "escalate_after": "P5D",
        "auto_cancel_after": "P14D",
    }
    data.update(overrides)

    return data


def start_workflow(parser: CamundaParser, process_id: str, **data) -> BpmnWorkflow:
    """Start an instance, hand it the start variables and run to the first wait."""
    spec = parser.get_spec(process_id)
    workflow = BpmnWorkflow(spec, parser.get_subprocess_specs(process_id))
    # SpiffWorkflow's root 'Start' task is the only ready task of a new
    # instance; its data is what the start event and everything after inherit.
    (start,) = workflow.get_tasks(state=TaskState.READY)
    start.data.update(data)
    workflow.do_engine_steps()

    return workflow


def ready_user_tasks(workflow: BpmnWorkflow) -> list:
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def topics_by_id(process_id: str) -> dict[str, str]:
    """Map each service task id of a diagram to its external task topic."""
    root = etree.parse(str(bpmn_path(process_id)))
    return {
        node.get("id"): node.get(f"{CAMUNDA}topic")
        for node in root.iterfind(".//bpmn:serviceTask", NS)
    }


@dataclass
class Journey:
    """What happened while a process instance ran to its end."""

    user_tasks: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    end_events: list[str] = field(default_factory=list)
    approval_rounds: list[int] = field(default_factory=list)
    completed: bool = False
    left_ready: list[str] = field(default_factory=list)


def settle(workflow: BpmnWorkflow, process_id: str, journey: Journey) -> None:
    """Play the external workers: complete every started service task.

    A camunda:type="external" service task parses into SpiffWorkflow's plain
    ServiceTask, whose run leaves the task STARTED until someone completes it.
    """
    topics = topics_by_id(process_id)
    workflow.do_engine_steps()
    while started := [
        t
        for t in workflow.get_tasks(state=TaskState.STARTED)
        if isinstance(t.task_spec, ServiceTask)
    ]:
        for task in started:
            journey.topics.append(topics[task.task_spec.bpmn_id])
            task.complete()
        workflow.do_engine_steps()


def drive(
    workflow: BpmnWorkflow,
    process_id: str,
    decisions: list[str],
    journey: Journey | None = None,
) -> Journey:
    """Complete user tasks in order, one approval decision per approval step."""
    journey = journey or Journey()
    decisions = list(decisions)
    settle(workflow, process_id, journey)

    for _ in range(20):  # more steps than any diagram has; stops a runaway loop
        ready = ready_user_tasks(workflow)
        if not ready:
            break
        assert len(ready) == 1, [t.task_spec.bpmn_id for t in ready]
        task = ready[0]
        bpmn_id = task.task_spec.bpmn_id
        journey.user_tasks.append(bpmn_id)

        if bpmn_id == "approve_request":
            journey.approval_rounds.append(task.data["approval_round"])
            task.data.update(
                decision=decisions.pop(0), comment="ok", note="checked by phone"
            )
        elif bpmn_id == "distribute_token":
            task.data.update(HARDWARE_DELIVERY)
        elif bpmn_id == "distribute_software_token":
            task.data.update(SOFTWARE_DELIVERY)
        else:
            pytest.fail(f"unexpected user task {bpmn_id}")
        task.run()
        settle(workflow, process_id, journey)

    journey.end_events = [
        t.task_spec.bpmn_id
        for t in workflow.get_tasks(state=TaskState.COMPLETED)
        if isinstance(t.task_spec, EndEvent)
    ]
    journey.completed = workflow.is_completed()
    journey.left_ready = [
        t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.READY)
    ]

    return journey


def policy_with(distribution: bool) -> bytes:
    """Return the shipped policy with every distribution output replaced."""
    root = etree.parse(str(POLICY_FILE))
    outputs = root.xpath(
        "//dmn:rule/dmn:outputEntry[position() = 2]/dmn:text", namespaces=NS
    )
    assert outputs, "the policy has no distribution column"
    for text in outputs:
        text.text = str(distribution)

    return etree.tostring(root)


def bounds(shape) -> tuple[float, float, float, float]:
    b = shape.find("dc:Bounds", NS)
    return tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))


def inside(inner, outer) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return ox <= x and oy <= y and x + w <= ox + ow and y + h <= oy + oh


def overlap(a, b) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def on_border(point, box, tolerance=1.0) -> bool:
    """Tell whether a point lies on the outline of a box."""
    px, py = point
    x, y, w, h = box
    within_x = x - tolerance <= px <= x + w + tolerance
    within_y = y - tolerance <= py <= y + h + tolerance
    on_vertical = min(abs(px - x), abs(px - x - w)) <= tolerance and within_y
    on_horizontal = min(abs(py - y), abs(py - y - h)) <= tolerance and within_x
    return on_vertical or on_horizontal


def di_problems(path: Path) -> list[str]:
    """List what a modeler would draw wrongly or not at all in a diagram."""
    root = etree.parse(str(path))
    problems = []
    (process,) = root.iterfind("bpmn:process", NS)
    shapes = {s.get("bpmnElement"): s for s in root.iterfind(".//bpmndi:BPMNShape", NS)}
    edges = {e.get("bpmnElement"): e for e in root.iterfind(".//bpmndi:BPMNEdge", NS)}

    for participant in root.iterfind(".//bpmn:participant", NS):
        if participant.get("id") not in shapes:
            problems.append(f"pool {participant.get('id')} has no shape")

    nodes = {
        child.get("id"): child
        for child in process
        if etree.QName(child).localname not in NOT_FLOW_NODES
    }
    for node_id in nodes:
        if node_id not in shapes:
            problems.append(f"flow node {node_id} has no shape")

    lanes_of = {node_id: [] for node_id in nodes}
    for lane in process.iterfind(".//bpmn:lane", NS):
        if lane.get("id") not in shapes:
            problems.append(f"lane {lane.get('name')} has no shape")
            continue
        lane_box = bounds(shapes[lane.get("id")])
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            lanes_of.setdefault(ref.text, []).append(lane.get("name"))
            if ref.text in shapes and not inside(bounds(shapes[ref.text]), lane_box):
                problems.append(f"{ref.text} is drawn outside lane {lane.get('name')}")
    for node_id, lanes in lanes_of.items():
        if len(lanes) != 1:
            problems.append(f"{node_id} is in lanes {lanes}, expected exactly one")

    boxes = {}
    for node_id, node in nodes.items():
        if node_id not in shapes:
            continue
        box = bounds(shapes[node_id])
        host = node.get("attachedToRef")
        if host is None:
            boxes[node_id] = box
            continue
        centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        if host not in shapes or not on_border(centre, bounds(shapes[host])):
            problems.append(f"boundary event {node_id} is not on the border of {host}")
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        if overlap(box_a, box_b):
            problems.append(f"{a} overlaps {b}")

    for flow in process.iterfind("bpmn:sequenceFlow", NS):
        flow_id = flow.get("id")
        if flow_id not in edges:
            problems.append(f"sequence flow {flow_id} has no edge")
            continue
        points = [
            (float(p.get("x")), float(p.get("y")))
            for p in edges[flow_id].iterfind("di:waypoint", NS)
        ]
        if len(points) < 2:
            problems.append(f"sequence flow {flow_id} has {len(points)} waypoints")
            continue
        for end, node_id in ((points[0], "sourceRef"), (points[-1], "targetRef")):
            ref = flow.get(node_id)
            if ref in shapes and not on_border(end, bounds(shapes[ref])):
                problems.append(f"sequence flow {flow_id} does not touch {ref}")
        for (x1, y1), (x2, y2) in itertools.pairwise(points):
            if x1 != x2 and y1 != y2:
                problems.append(f"sequence flow {flow_id} has a diagonal segment")

    return problems


# ----------------------------------------------------------- files and parsing


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_diagram_parses_with_one_executable_process(process_id):
    parser = make_parser()
    root = etree.parse(str(bpmn_path(process_id)))
    processes = root.findall("bpmn:process", NS)

    assert [p.get("id") for p in processes] == [process_id]
    assert processes[0].get("isExecutable") == "true"
    assert set(parser.get_process_ids()) == set(PROCESS_IDS)
    assert parser.get_spec(process_id).name == process_id


def test_policy_has_one_decision_with_a_shape():
    root = etree.parse(str(POLICY_FILE))
    decisions = root.findall("dmn:decision", NS)
    shape_refs = [
        s.get("dmnElementRef") for s in root.iterfind(".//dmndi:DMNShape", NS)
    ]

    assert [d.get("id") for d in decisions] == ["workflow_policy"]
    assert decisions[0].find("dmn:decisionTable", NS).get("hitPolicy") == "FIRST"
    assert shape_refs == ["workflow_policy"]


def test_policy_columns_are_the_ones_the_diagrams_read():
    table = etree.parse(str(POLICY_FILE)).find(".//dmn:decisionTable", NS)
    inputs = [
        (
            i.findtext("dmn:inputExpression/dmn:text", namespaces=NS),
            i.find("dmn:inputExpression", NS).get("typeRef"),
        )
        for i in table.iterfind("dmn:input", NS)
    ]
    outputs = [
        (o.get("name"), o.get("typeRef")) for o in table.iterfind("dmn:output", NS)
    ]

    assert inputs == [
        ("request_type", "string"),
        ("token_class", "string"),
        ("security_domain", "string"),
    ]
    assert outputs == [("approval_steps", "integer"), ("distribution", "boolean")]


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_diagram_interchange_covers_every_element(process_id):
    assert di_problems(bpmn_path(process_id)) == []


def test_diagram_interchange_check_finds_a_missing_shape(tmp_path):
    broken = tmp_path / "broken.bpmn"
    root = etree.parse(str(bpmn_path("new_token")))
    shape = root.find(".//bpmndi:BPMNShape[@bpmnElement='approve_request']", NS)
    shape.getparent().remove(shape)
    root.write(str(broken))

    assert "flow node approve_request has no shape" in di_problems(broken)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_diagram_has_the_lanes_and_pool_it_needs(process_id):
    root = etree.parse(str(bpmn_path(process_id)))
    participants = root.findall(".//bpmn:participant", NS)
    lanes = [lane.get("name") for lane in root.iterfind(".//bpmn:lane", NS)]
    expected = [
        lane
        for lane in LANES
        if process_id in TOKEN_PROCESS_IDS or lane != "Token Distributor"
    ]

    assert [p.get("processRef") for p in participants] == [process_id]
    assert lanes == expected


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_every_gateway_branch_is_labelled(process_id):
    root = etree.parse(str(bpmn_path(process_id)))
    unnamed = []
    for gateway in root.iterfind(".//bpmn:exclusiveGateway", NS):
        outgoing = root.xpath(
            "//bpmn:sequenceFlow[@sourceRef=$id]", namespaces=NS, id=gateway.get("id")
        )
        if len(outgoing) > 1:
            unnamed += [f.get("id") for f in outgoing if not f.get("name")]

    assert unnamed == []


# ------------------------------------------------------------- the contract


def node_lane(spec, bpmn_id: str) -> str:
    return spec.task_specs[bpmn_id].lane


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_tasks_carry_the_ids_lanes_and_groups_the_engine_expects(parser, process_id):
    spec = parser.get_spec(process_id)
    root = etree.parse(str(bpmn_path(process_id)))
    approve = root.find(".//bpmn:userTask[@id='approve_request']", NS)
    policy = root.find(".//bpmn:businessRuleTask[@id='determine_policy']", NS)

    assert spec.task_specs["approve_request"].bpmn_name == "Approve request"
    assert node_lane(spec, "approve_request") == "Request Approver"
    assert approve.get(f"{CAMUNDA}candidateGroups") == "request_approver"
    assert policy.get(f"{CAMUNDA}decisionRef") == "workflow_policy"
    assert node_lane(spec, "determine_policy") == "Provisioning System"
    assert node_lane(spec, "request_submitted") == "User"
    for end in ("request_completed", "request_rejected", "request_cancelled"):
        assert isinstance(spec.task_specs[end], EndEvent)
    for service in root.iterfind(".//bpmn:serviceTask", NS):
        assert service.get(f"{CAMUNDA}type") == "external"
        assert node_lane(spec, service.get("id")) == "Provisioning System"


@pytest.mark.parametrize("process_id", TOKEN_PROCESS_IDS)
def test_distribution_tasks_belong_to_the_token_distributor(parser, process_id):
    spec = parser.get_spec(process_id)
    root = etree.parse(str(bpmn_path(process_id)))

    assert spec.task_specs["distribute_token"].bpmn_name == "Distribute hardware token"
    assert spec.task_specs["distribute_software_token"].bpmn_name == (
        "Deliver software token"
    )
    for task_id in ("distribute_token", "distribute_software_token"):
        task = root.find(f".//bpmn:userTask[@id='{task_id}']", NS)
        assert task.get(f"{CAMUNDA}candidateGroups") == "token_distributor"
        assert node_lane(spec, task_id) == "Token Distributor"


def form_summary(form) -> list[tuple]:
    """Reduce a parsed Camunda form to (id, type, label, required, options)."""
    summary = []
    for f in form.fields:
        required = any(v.name == "required" for v in f.validation)
        options = [(o.id, o.name) for o in getattr(f, "options", [])]
        summary.append((f.id, f.type, f.label, required, options))

    return summary


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_approval_form_offers_the_decision_and_notes(parser, process_id):
    form = parser.get_spec(process_id).task_specs["approve_request"].form

    assert form_summary(form) == [
        (
            "decision",
            "enum",
            "Decision",
            True,
            [
                ("approve", "Approve"),
                ("reject", "Reject"),
                ("cancel", "Cancel request"),
            ],
        ),
        ("comment", "string", "Comment to the requester", False, []),
        ("note", "string", "Internal note (staff only)", False, []),
        ("token_model", "string", "Token model", False, []),
    ]


def test_distribution_forms_record_the_delivery(parser):
    specs = parser.get_spec("new_token").task_specs
    hardware = form_summary(specs["distribute_token"].form)
    software = form_summary(specs["distribute_software_token"].form)
    carriers = ["dhl", "ups", "fedex", "postal_service", "courier", "hand_delivery"]

    assert [(f[0], f[1], f[3]) for f in hardware] == [
        ("serial_number", "string", True),
        ("shipping_address", "string", True),
        ("carrier", "enum", True),
        ("tracking_number", "string", False),
    ]
    assert [option for option, _ in hardware[2][4]] == carriers
    assert software == [
        (
            "delivery_method",
            "enum",
            "Delivery method",
            True,
            [
                ("activation_email", "Activation link by e-mail"),
                ("qr_in_person", "QR code in person"),
            ],
        )
    ]


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_approval_timers_are_attached_to_the_approval_task(process_id):
    root = etree.parse(str(bpmn_path(process_id)))
    timers = {}
    for event in root.iterfind(".//bpmn:boundaryEvent", NS):
        duration = event.findtext(
            "bpmn:timerEventDefinition/bpmn:timeDuration", namespaces=NS
        )
        interrupting = event.get("cancelActivity", "true") == "true"
        timers[event.get("id")] = (event.get("attachedToRef"), duration, interrupting)

    assert timers == {
        "approval_reminder": ("approve_request", "reminder_after", False),
        "approval_escalation": ("approve_request", "escalate_after", False),
        "approval_timeout": ("approve_request", "auto_cancel_after", True),
    }


# ------------------------------------------------------------- running them

# (request type, token class, security domain, approval steps, user tasks after
# the approvals, service topics on the way, in order of completion)
POLICY_ROWS = [
    (
        "new_token",
        "hardware",
        "acme/apac",
        3,
        ["distribute_token"],
        ["assign_and_ship_token"],
    ),
    (
        "new_token",
        "hardware",
        "acme/emea/paris",
        2,
        ["distribute_token"],
        ["assign_and_ship_token"],
    ),
    (
        "new_token",
        "software",
        "acme/emea/paris",
        1,
        ["distribute_software_token"],
        ["issue_software_token"],
    ),
    (
        "replace_expiring_token",
        "hardware",
        "acme",
        0,
        ["distribute_token"],
        ["assign_and_ship_token"],
    ),
    (
        "replace_expiring_token",
        "software",
        "acme",
        0,
        ["distribute_software_token"],
        ["issue_software_token"],
    ),
    (
        "replace_lost_token",
        "hardware",
        "acme",
        1,
        ["distribute_token"],
        ["disable_old_token", "assign_and_ship_token"],
    ),
    (
        "replace_lost_token",
        "software",
        "acme",
        1,
        ["distribute_software_token"],
        ["disable_old_token", "issue_software_token"],
    ),
    ("ondemand_tokencode", "none", "acme", 1, [], ["enable_ondemand_tokencode"]),
    ("group_membership", "none", "acme", 1, [], ["add_group_membership"]),
    ("new_account", "none", "acme", 1, [], ["create_account"]),
]
ROW_IDS = [f"{row[0]}-{row[1]}-{row[2]}" for row in POLICY_ROWS]


@pytest.mark.parametrize(
    ("request_type", "token_class", "domain", "steps", "distribution", "topics"),
    POLICY_ROWS,
    ids=ROW_IDS,
)
def test_approved_request_follows_its_policy(
    parser, request_type, token_class, domain, steps, distribution, topics
):
    workflow = start_workflow(
        parser,
        request_type,
        **start_data(request_type, token_class=token_class, security_domain=domain),
    )
    journey = drive(workflow, request_type, ["approve"] * steps)

    assert journey.user_tasks == ["approve_request"] * steps + distribution
    assert journey.approval_rounds == list(range(1, steps + 1))
    assert journey.topics == topics
    assert journey.end_events == ["request_completed"]
    assert journey.completed
    assert journey.left_ready == []


APPROVAL_STEPS = [(row[0], row[1], row[2], row[3]) for row in POLICY_ROWS if row[3]]
REJECTIONS = [(*row, step) for row in APPROVAL_STEPS for step in range(1, row[3] + 1)]


@pytest.mark.parametrize("ending", ["reject", "cancel"])
@pytest.mark.parametrize(
    ("request_type", "token_class", "domain", "steps", "at_step"),
    REJECTIONS,
    ids=[f"{r[0]}-{r[1]}-{r[2]}-step{r[4]}" for r in REJECTIONS],
)
def test_rejection_or_cancellation_ends_the_request_at_once(
    parser, request_type, token_class, domain, steps, at_step, ending
):
    workflow = start_workflow(
        parser,
        request_type,
        **start_data(request_type, token_class=token_class, security_domain=domain),
    )
    journey = drive(workflow, request_type, ["approve"] * (at_step - 1) + [ending])
    expected_end = "request_rejected" if ending == "reject" else "request_cancelled"
    before_approval = (
        ["disable_old_token"] if request_type == "replace_lost_token" else []
    )

    assert journey.user_tasks == ["approve_request"] * at_step
    assert journey.end_events == [expected_end]
    assert journey.topics == before_approval
    assert journey.completed
    assert journey.left_ready == []
    assert workflow.get_tasks(state=TaskState.WAITING) == []


@pytest.mark.parametrize(
    ("domain", "steps"),
    [
        ("acme/apac", 3),
        ("acme/apac/tokyo", 3),
        ("acme/apacific", 2),
        ("acme/emea/apac", 2),
    ],
)
def test_domain_row_matches_the_domain_and_its_sub_domains(parser, domain, steps):
    workflow = start_workflow(
        parser, "new_token", **start_data("new_token", security_domain=domain)
    )
    (task,) = ready_user_tasks(workflow)

    assert task.data["approval_steps"] == steps
    assert task.data["distribution"] is True


@pytest.mark.parametrize(
    ("process_id", "token_class", "steps", "topics"),
    [
        ("new_token", "software", 1, ["issue_software_token"]),
        ("new_token", "hardware", 2, []),
        ("replace_expiring_token", "software", 0, ["issue_software_token"]),
        ("replace_lost_token", "hardware", 1, ["disable_old_token"]),
        (
            "replace_lost_token",
            "software",
            1,
            ["disable_old_token", "issue_software_token"],
        ),
    ],
)
def test_policy_without_distribution_skips_the_distributor(
    process_id, token_class, steps, topics
):
    # A hardware token without a distribution step is assigned by a third party,
    # so the request simply completes; a software token is still issued.
    parser = make_parser(policy_with(distribution=False))
    workflow = start_workflow(
        parser, process_id, **start_data(process_id, token_class=token_class)
    )
    journey = drive(workflow, process_id, ["approve"] * steps)

    assert journey.user_tasks == ["approve_request"] * steps
    assert journey.topics == topics
    assert journey.end_events == ["request_completed"]
    assert journey.completed


def test_corrected_token_model_reaches_the_distribution_step(parser):
    workflow = start_workflow(
        parser, "new_token", **start_data("new_token", token_class="software")
    )
    (approval,) = ready_user_tasks(workflow)
    approval.data.update(decision="approve", token_model="SID800")
    approval.run()
    workflow.do_engine_steps()
    (distribution,) = ready_user_tasks(workflow)

    assert distribution.task_spec.bpmn_id == "distribute_software_token"
    assert distribution.data["token_model"] == "SID800"


# ------------------------------------------------------------------ timers


def run_timers_until(
    workflow: BpmnWorkflow, process_id: str, bpmn_id: str, journey: Journey
) -> bool:
    """Refresh timers until a task has completed; a zero duration is due at once."""
    for _ in range(1000):
        workflow.refresh_timers()
        settle(workflow, process_id, journey)
        if workflow.get_tasks(state=TaskState.COMPLETED, spec_name=bpmn_id):
            return True

    return False


def test_reminder_and_escalation_leave_the_approval_open(parser):
    workflow = start_workflow(
        parser,
        "new_token",
        **start_data("new_token", reminder_after="PT0S", escalate_after="PT0S"),
    )
    journey = Journey()

    assert run_timers_until(workflow, "new_token", "reminder_sent", journey)
    assert run_timers_until(workflow, "new_token", "request_escalated", journey)
    assert [t.task_spec.bpmn_id for t in ready_user_tasks(workflow)] == [
        "approve_request"
    ]
    assert not workflow.is_completed()
    assert sorted(journey.topics) == ["escalate_request", "send_reminder"]

    # Every approval step is a new task with its own timers, so the second
    # step may be reminded as well before it is approved.
    drive(workflow, "new_token", ["approve", "approve"], journey)
    assert set(journey.topics[:-1]) == {"send_reminder", "escalate_request"}
    assert journey.topics[-1] == "assign_and_ship_token"
    assert journey.user_tasks == ["approve_request"] * 2 + ["distribute_token"]
    assert journey.completed


def test_timeout_expires_the_request(parser):
    workflow = start_workflow(
        parser,
        "group_membership",
        **start_data("group_membership", token_class="none", auto_cancel_after="PT0S"),
    )
    journey = Journey()

    assert run_timers_until(workflow, "group_membership", "request_expired", journey)
    drive(workflow, "group_membership", [], journey)
    assert journey.user_tasks == []
    assert journey.topics == ["expire_request"]
    assert journey.end_events == ["request_expired"]
    assert journey.completed
    assert workflow.get_tasks(state=TaskState.WAITING) == []


def test_timers_wait_while_their_duration_runs(parser):
    workflow = start_workflow(parser, "new_account", **start_data("new_account"))
    waiting = workflow.get_tasks(state=TaskState.WAITING)

    workflow.refresh_timers()
    workflow.do_engine_steps()

    assert sorted(t.task_spec.bpmn_id for t in waiting) == [
        "approval_escalation",
        "approval_reminder",
        "approval_timeout",
    ]
    assert [t.task_spec.bpmn_id for t in ready_user_tasks(workflow)] == [
        "approve_request"
    ]


# ------------------------------------------------------------ in the modeler

FRONTEND_MODULES = BPMN_DIR.parent / "web" / "frontend" / "node_modules"
BPMN_JS = FRONTEND_MODULES / "bpmn-js" / "dist" / "bpmn-modeler.development.js"
DMN_JS = FRONTEND_MODULES / "dmn-js" / "dist" / "dmn-modeler.development.js"


@pytest.fixture(scope="module")
def modeler_page(tmp_path_factory):
    """Open a blank page with the bpmn-js and dmn-js modelers loaded."""
    if not (BPMN_JS.exists() and DMN_JS.exists()):
        pytest.skip("bpmn-js and dmn-js are not installed; run npm ci in web/frontend")
    page_file = tmp_path_factory.mktemp("modeler") / "modeler.html"
    page_file.write_text(
        f'<html><head><script src="{BPMN_JS.as_uri()}"></script>'
        f'<script src="{DMN_JS.as_uri()}"></script></head>'
        '<body><div id="canvas" style="width:1600px;height:900px"></div></body></html>'
    )
    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto(page_file.as_uri())
        yield page


IMPORT_BPMN = """async (xml) => {
  document.getElementById('canvas').innerHTML = '';
  const modeler = new BpmnJS({container: '#canvas'});
  const result = await modeler.importXML(xml);
  const drawn = modeler.get('elementRegistry').getAll().map((e) => e.id);
  return {warnings: result.warnings.map((w) => w.message), drawn};
}"""
IMPORT_DMN = """async (xml) => {
  document.getElementById('canvas').innerHTML = '';
  const modeler = new DmnJS({container: '#canvas'});
  const result = await modeler.importXML(xml);
  const table = modeler.getViews().find((v) => v.type === 'decisionTable');
  await modeler.open(table);
  const rows = document.querySelectorAll('.tjs-table tbody tr').length;
  return {warnings: result.warnings.map((w) => w.message), rows};
}"""


@pytest.mark.browser
@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_bpmn_js_draws_every_element_without_warnings(modeler_page, process_id):
    root = etree.parse(str(bpmn_path(process_id)))
    (process,) = root.iterfind("bpmn:process", NS)
    elements = {
        child.get("id")
        for child in process
        if etree.QName(child).localname not in {"laneSet", "documentation"}
    }
    result = modeler_page.evaluate(IMPORT_BPMN, bpmn_path(process_id).read_text())

    assert result["warnings"] == []
    assert elements - set(result["drawn"]) == set()


@pytest.mark.browser
def test_dmn_js_opens_the_policy_table(modeler_page):
    result = modeler_page.evaluate(IMPORT_DMN, POLICY_FILE.read_text())
    rules = etree.parse(str(POLICY_FILE)).findall(".//dmn:rule", NS)

    assert result["warnings"] == []
    assert result["rows"] == len(rules)
