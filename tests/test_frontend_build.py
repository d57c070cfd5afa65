"""Build the console's browser bundles and drive them in a real Chromium."""

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_browser import launch_chromium

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "web" / "frontend"
VENDOR = ROOT / "web" / "static" / "vendor"
ARTIFACTS = ROOT / "test-artifacts"

# Each output file with the least size in bytes that a real build reaches;
# an empty or stub file means the build went wrong.
EXPECTED_FILES = {
    "bpmn-viewer.js": 100_000,
    "bpmn-modeler.js": 1_000_000,
    "htmx.min.js": 30_000,
    "diagram-js.css": 10_000,
    "bpmn-js.css": 5_000,
    "properties-panel.css": 20_000,
    "dmn-js.css": 20_000,
    "provisioning-diagram.css": 300,
}

BUNDLE_NAMES = {
    "bpmn-viewer.js": ["ProvisioningDiagram", "showDiagram"],
    "bpmn-modeler.js": ["ProvisioningModeler", "openModeler", "openDmnEditor"],
    "htmx.min.js": ["htmx"],
}

PROCESS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"
    xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    xmlns:di="http://www.omg.org/spec/DD/20100524/DI"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    id="Definitions_smoke" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="token_request" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1">
      <bpmn:outgoing>Flow_1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:userTask id="Task_Approve" name="Approve request"
        camunda:candidateGroups="approvers">
      <bpmn:incoming>Flow_1</bpmn:incoming>
      <bpmn:outgoing>Flow_2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="EndEvent_1">
      <bpmn:incoming>Flow_2</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="Flow_1" sourceRef="StartEvent_1" targetRef="Task_Approve"/>
    <bpmn:sequenceFlow id="Flow_2" sourceRef="Task_Approve" targetRef="EndEvent_1"/>
  </bpmn:process>
  <bpmndi:BPMNDiagram id="Diagram_1">
    <bpmndi:BPMNPlane id="Plane_1" bpmnElement="token_request">
      <bpmndi:BPMNShape id="StartEvent_1_di" bpmnElement="StartEvent_1">
        <dc:Bounds x="152" y="102" width="36" height="36"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Task_Approve_di" bpmnElement="Task_Approve">
        <dc:Bounds x="240" y="80" width="100" height="80"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="EndEvent_1_di" bpmnElement="EndEvent_1">
        <dc:Bounds x="392" y="102" width="36" height="36"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="Flow_1_di" bpmnElement="Flow_1">
        <di:waypoint x="188" y="120"/>
        <di:waypoint x="240" y="120"/>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_2_di" bpmnElement="Flow_2">
        <di:waypoint x="340" y="120"/>
        <di:waypoint x="392" y="120"/>
      </bpmndi:BPMNEdge>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""

DECISION_XML = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/"
    id="approval_policy_defs" name="Approval policy" namespace="http://camunda.org/schema/1.0/dmn">
  <decision id="approval_steps" name="Approval steps">
    <decisionTable id="DecisionTable_1">
      <input id="Input_1" label="Request type">
        <inputExpression id="InputExpression_1" typeRef="string">
          <text>request_type</text>
        </inputExpression>
      </input>
      <output id="Output_1" label="Approval steps" name="approval_steps"
          typeRef="integer"/>
      <rule id="Rule_1">
        <inputEntry id="InputEntry_1"><text>"new_hardware"</text></inputEntry>
        <outputEntry id="OutputEntry_1"><text>2</text></outputEntry>
      </rule>
    </decisionTable>
  </decision>
</definitions>
"""

PAGE_HTML = """<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <link rel="stylesheet" href="/vendor/diagram-js.css">
  <link rel="stylesheet" href="/vendor/bpmn-js.css">
  <link rel="stylesheet" href="/vendor/properties-panel.css">
  <link rel="stylesheet" href="/vendor/dmn-js.css">
  <link rel="stylesheet" href="/vendor/provisioning-diagram.css">
  <style>
    #diagram, #canvas, #dmn { height: 400px; }
    #properties { width: 300px; }
  </style>
</head>
<body>
  <div id="diagram"></div>
  <div style="display: flex"><div id="canvas" style="flex: 1"></div>
  <div id="properties"></div></div>
  <div id="dmn"></div>
  <script src="/vendor/htmx.min.js"></script>
  <script src="/vendor/bpmn-viewer.js"></script>
  <script src="/vendor/bpmn-modeler.js"></script>
</body>
</html>
"""


@pytest.fixture(scope="module")
def vendor() -> Path:
    """Run web/frontend/build.sh once for this module and return the output folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(
            "node and npm are needed to build web/static/vendor; install Node.js 18+"
        )

    result = subprocess.run(
        ["bash", str(FRONTEND / "build.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    return VENDOR


@pytest.mark.parametrize(("name", "least_size"), EXPECTED_FILES.items())
def test_build_writes_file(vendor: Path, name: str, least_size: int) -> None:
    path = vendor / name

    assert path.is_file(), f"{name} is missing from {vendor}"
    assert path.stat().st_size >= least_size


def test_build_writes_fonts_that_css_links(vendor: Path) -> None:
    fonts = {path.name for path in (vendor / "fonts").iterdir()}

    for css in ("bpmn-js.css", "dmn-js.css"):
        text = (vendor / css).read_text(encoding="utf-8")
        linked = [font for font in fonts if f"./fonts/{font}" in text]
        assert any(font.endswith(".woff2") for font in linked), css


@pytest.mark.parametrize(("bundle", "names"), BUNDLE_NAMES.items())
def test_bundle_exposes_global_names(vendor: Path, bundle: str, names: list) -> None:
    text = (vendor / bundle).read_text(encoding="utf-8")

    for name in names:
        assert name in text, f"{bundle} does not mention {name}"


def test_build_sh_skips_when_up_to_date(vendor: Path) -> None:
    result = subprocess.run(
        ["bash", str(FRONTEND / "build.sh")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "web/static/vendor is up to date; nothing to do." in result.stdout


def test_build_sh_explains_missing_node(tmp_path: Path) -> None:
    # A PATH with the shell tools build.sh needs, but neither node nor npm.
    for tool in ("dirname", "find"):
        (tmp_path / tool).symlink_to(shutil.which(tool))

    result = subprocess.run(
        [shutil.which("bash"), str(FRONTEND / "build.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": os.environ.get("HOME", "/tmp")},
    )

    assert result.returncode == 1
    assert "build.sh: 'node' was not found on PATH." in result.stderr


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep request lines out of the test output."""


@pytest.fixture(scope="module")
def site(vendor: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve a page that loads every bundle, from 127.0.0.1 on a free port."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE_HTML, encoding="utf-8")
    (root / "vendor").symlink_to(vendor, target_is_directory=True)

    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(site: str):
    with launch_chromium() as chromium:
        yield chromium


class PageWatch:
    """A loaded page and what went wrong on it: errors, foreign or failed requests."""

    def __init__(self, page, site: str) -> None:
        self.page = page
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.failed: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", self._check_origin)
        page.on("requestfailed", lambda request: self.failed.append(request.url))
        page.on(
            "response",
            lambda response: (
                response.status >= 400
                and self.failed.append(f"{response.status} {response.url}")
            ),
        )
        self._site = site

    def _check_origin(self, request) -> None:
        if not request.url.startswith((self._site, "data:", "blob:")):
            self.foreign.append(request.url)

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.foreign == [], "the page fetched from outside the console"
        assert self.failed == []


@pytest.fixture
def watched(browser, site: str, request: pytest.FixtureRequest) -> Iterator[PageWatch]:
    """Open the bundle page; save a screenshot to test-artifacts/ if the test fails."""
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    watch = PageWatch(page, site)
    page.goto(f"{site}/index.html")
    page.wait_for_load_state("networkidle")
    failures_before = request.session.testsfailed

    yield watch

    if request.session.testsfailed > failures_before:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True
        )
    page.close()


def _marker_classes(page, element_id: str) -> list[str]:
    selector = f'#diagram [data-element-id="{element_id}"]'
    return page.eval_on_selector(selector, "el => [...el.classList]")


@pytest.mark.browser
def test_viewer_highlights_current_and_completed(watched: PageWatch) -> None:
    page = watched.page

    missing = page.evaluate(
        """async (xml) => {
            const result = await ProvisioningDiagram.showDiagram('diagram', xml, {
                highlight: ['Task_Approve'],
                completed: ['StartEvent_1', 'Flow_1'],
            });
            return result.missing;
        }""",
        PROCESS_XML,
    )
    stroke = page.eval_on_selector(
        '#diagram [data-element-id="Task_Approve"] .djs-visual > rect',
        "el => getComputedStyle(el).stroke",
    )

    assert missing == []
    assert "highlight-current" in _marker_classes(page, "Task_Approve")
    assert "highlight-completed" in _marker_classes(page, "StartEvent_1")
    assert "highlight-completed" in _marker_classes(page, "Flow_1")
    assert "highlight-current" not in _marker_classes(page, "EndEvent_1")
    # provisioning-diagram.css is linked and beats bpmn-js's inline stroke.
    assert stroke == "rgb(194, 65, 12)"
    watched.assert_clean()


@pytest.mark.browser
def test_viewer_reports_unknown_highlight_ids(watched: PageWatch) -> None:
    missing = watched.page.evaluate(
        """async (xml) => (await ProvisioningDiagram.showDiagram(
            'diagram', xml, {highlight: ['Task_Gone']})).missing""",
        PROCESS_XML,
    )

    assert missing == ["Task_Gone"]
    watched.assert_clean()


@pytest.mark.browser
def test_viewer_explains_unreadable_xml(watched: PageWatch) -> None:
    message = watched.page.evaluate(
        """() => ProvisioningDiagram.showDiagram('diagram', 'not a diagram')
            .then(() => 'drawn', (error) => error.message)"""
    )
    shown = watched.page.inner_text("#diagram .provisioning-diagram-error")

    assert message.startswith("The process diagram could not be drawn: ")
    assert shown == message


@pytest.mark.browser
def test_viewer_explains_missing_container(watched: PageWatch) -> None:
    message = watched.page.evaluate(
        """() => ProvisioningDiagram.showDiagram('no-such-box', '')
            .then(() => 'drawn', (error) => error.message)"""
    )

    assert message == (
        'ProvisioningDiagram: no element with id "no-such-box" on this page; '
        'add <div id="no-such-box"></div> before calling showDiagram.'
    )


@pytest.mark.browser
def test_modeler_round_trips_xml_with_camunda_attributes(watched: PageWatch) -> None:
    page = watched.page

    xml = page.evaluate(
        """async (xml) => {
            window.smokeModeler = ProvisioningModeler.openModeler(
                {canvasId: 'canvas', propertiesId: 'properties', xml});
            return await window.smokeModeler.getXml();
        }""",
        PROCESS_XML,
    )
    # The panel subscribes to selection changes only after its first render,
    # so select the task until the panel shows the task's groups.
    page.wait_for_function(
        """() => {
            const modeler = window.smokeModeler.editor;
            const task = modeler.get('elementRegistry').get('Task_Approve');
            modeler.get('selection').select(task);
            return document.getElementById('properties')
                .innerText.includes('User assignment');
        }"""
    )
    page.click("#properties >> text=User assignment")
    panel = page.inner_text("#properties")

    assert 'id="Task_Approve"' in xml
    assert 'camunda:candidateGroups="approvers"' in xml
    # The Camunda 7 provider is loaded: it adds the assignment group.
    assert "Candidate groups" in panel
    watched.assert_clean()


@pytest.mark.browser
def test_modeler_explains_missing_properties_container(watched: PageWatch) -> None:
    message = watched.page.evaluate(
        """() => {
            try {
                ProvisioningModeler.openModeler(
                    {canvasId: 'canvas', propertiesId: 'nope'});
                return 'opened';
            } catch (error) {
                return error.message;
            }
        }"""
    )

    assert message == (
        'ProvisioningModeler: no element with id "nope" (option "propertiesId") on '
        "this page; add the container element before opening the editor."
    )


@pytest.mark.browser
def test_dmn_editor_opens_decision_table_and_round_trips(watched: PageWatch) -> None:
    page = watched.page

    xml = page.evaluate(
        """async (xml) => {
            const editor = ProvisioningModeler.openDmnEditor({containerId: 'dmn', xml});
            return await editor.getXml();
        }""",
        DECISION_XML,
    )

    assert 'id="approval_steps"' in xml
    assert "new_hardware" in xml
    assert page.locator("#dmn .tjs-table").count() == 1
    watched.assert_clean()


@pytest.mark.browser
def test_dmn_editor_explains_unreadable_xml(watched: PageWatch) -> None:
    message = watched.page.evaluate(
        """() => ProvisioningModeler.openDmnEditor({containerId: 'dmn', xml: '<nope'})
            .getXml().then(() => 'opened', (error) => error.message)"""
    )

    assert message.startswith("The DMN decision could not be opened: ")
