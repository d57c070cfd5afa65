"""The console in a real browser: Chromium driven by Playwright against a
real server on 127.0.0.1, with the product's diagrams and the demo data on a
SQLite file database.

Each test gets its own server and database. A failing test leaves a
screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from helpers_browser import launch_chromium
from helpers_web import (
    ROOT,
    copy_database,
    open_task_id,
    template_database,
)
from werkzeug.serving import make_server

from engine import instances
from engine.errors import PermissionDenied
from engine.identity import actor_for
from web import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "demo-password"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def frontend() -> None:
    """Build the browser bundles once per run (build.sh skips when up to date)."""
    result = subprocess.run(
        [str(ROOT / "web" / "frontend" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"web/frontend/build.sh failed:\n{result.stderr}")


# Module scope: an open sync Playwright keeps an event loop running in this
# thread, and later test modules that start their own would be refused.
@pytest.fixture(scope="module")
def browser(frontend):
    with launch_chromium() as chromium:
        yield chromium


class LiveServer:
    def __init__(self, base_url: str, database, settings):
        self.base_url = base_url
        self.database = database
        self.settings = settings


@pytest.fixture
def live_server(tmp_path, tmp_path_factory) -> Iterator[LiveServer]:
    database, settings = copy_database(template_database(tmp_path_factory), tmp_path)
    app = create_app(
        {"SETTINGS": settings, "DATABASE": database, "RATELIMIT_ENABLED": False}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", database, settings)
    server.shutdown()
    thread.join()
    database.dispose()


@pytest.fixture
def open_page(browser, live_server, request):
    """Return ``open_page(username)``: a signed-in page in a fresh context."""
    contexts = []

    def open_as(username: str, width: int = 1360):
        context = browser.new_context(
            base_url=live_server.base_url, viewport={"width": width, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("User name").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/$"))
        return page

    yield open_as
    for context in contexts:
        context.close()


@contextmanager
def screenshot_on_failure(page_holder: dict, name: str):
    """Save a screenshot of the last page used when the block fails."""
    try:
        yield
    except BaseException:
        page = page_holder.get("page")
        if page is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        raise


def refusal_of(database, username: str, task_id: str) -> str:
    """Return the engine's reason why ``username`` may not work the task."""
    with database.read() as session:
        task = instances.get_task(session, task_id)
        with pytest.raises(PermissionDenied) as refused:
            instances.check_may_work(
                session, actor_for(session, username), task, task.instance
            )
    return str(refused.value)


def submit_hardware_request(page) -> int:
    page.goto("/requests/new/new_token")
    page.get_by_label("Hardware token").check()
    page.get_by_label("Token model").select_option("SID700")
    page.get_by_label("Shipping address").fill("1 Rue de la Paix, 75002 Paris")
    page.get_by_label("Justification").fill("I start in the Paris office on Monday.")
    page.get_by_role("button", name="Submit request").click()
    page.wait_for_url(re.compile(r".*/requests/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def open_task_of(page, request_id: int, task_name: str) -> None:
    page.goto("/inbox")
    row = page.locator("tr", has_text=f"#{request_id}").filter(has_text=task_name)
    row.get_by_role("link", name=task_name).click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]+$"))


def wait_for_diagram(page) -> None:
    page.wait_for_selector("[data-diagram][data-ready=true]")


def test_full_hardware_token_request_by_user_two_approvers_and_distributor(
    open_page,
):
    holder: dict = {}
    with screenshot_on_failure(holder, "full_hardware_request"):
        user = holder["page"] = open_page("jdoe")
        request_id = submit_hardware_request(user)
        assert "Waiting for approval" in user.locator(".timeline").inner_text()

        first = holder["page"] = open_page("hbernard")
        open_task_of(first, request_id, "Approve request")
        first.get_by_label("Comment to the requester").fill("Welcome to Paris.")
        first.get_by_label("Internal note (staff only)").fill("Checked with HR.")
        first.get_by_role("button", name="Approve").click()
        first.wait_for_url(re.compile(r".*/inbox$"))
        assert f"You approved request {request_id}" in first.content()

        second = holder["page"] = open_page("aschmidt")
        open_task_of(second, request_id, "Approve request")
        second.get_by_role("button", name="Approve").click()
        second.wait_for_url(re.compile(r".*/inbox$"))

        distributor = holder["page"] = open_page("lrossi")
        open_task_of(distributor, request_id, "Distribute hardware token")
        serial_select = distributor.get_by_label("Serial number")
        serial = serial_select.locator("option").nth(1).get_attribute("value")
        serial_select.select_option(serial)
        distributor.get_by_label("Carrier").select_option("dhl")
        distributor.get_by_label("Tracking number").fill("JD0146000012345")
        distributor.get_by_role("button", name="Complete task").click()
        distributor.wait_for_url(re.compile(r".*/inbox$"))

        holder["page"] = user
        user.goto(f"/requests/{request_id}")
        strip = user.locator(".status-strip").inner_text()
        assert "Completed" in strip
        page_text = user.locator("main").inner_text()
        assert serial in page_text
        assert "JD0146000012345" in page_text
        assert "Welcome to Paris." in page_text
        assert "Checked with HR." not in page_text

        user.goto("/tokens")
        card = user.locator(".token-card", has_text=serial)
        card.get_by_role("button", name=re.compile("I have received it")).click()
        user.wait_for_url(re.compile(r".*/tokens$"))
        assert "Active" in user.locator(".token-card", has_text=serial).inner_text()


def test_separation_of_duties_refuses_a_second_approval_by_the_same_person(
    open_page, live_server
):
    holder: dict = {}
    with screenshot_on_failure(holder, "separation_of_duties"):
        user = holder["page"] = open_page("jdoe")
        request_id = submit_hardware_request(user)

        approver = holder["page"] = open_page("aschmidt")
        open_task_of(approver, request_id, "Approve request")
        approver.get_by_role("button", name="Approve").click()
        approver.wait_for_url(re.compile(r".*/inbox$"))

        # The second step is not offered to her, and opening it directly
        # says why and offers no form.
        assert approver.locator("tr", has_text=f"#{request_id}").count() == 0
        second_task = open_task_id(live_server.database, request_id)
        approver.goto(f"/tasks/{second_task}")
        warning = approver.locator(".notice-warning").inner_text()
        assert refusal_of(live_server.database, "aschmidt", second_task) in warning
        assert "You already completed an earlier 'Approve request' step" in warning
        assert approver.get_by_role("button", name="Approve").count() == 0


def test_software_token_activation_with_a_code_from_the_otpauth_uri(
    open_page, live_server
):
    holder: dict = {}
    with screenshot_on_failure(holder, "software_activation"):
        user = holder["page"] = open_page("cmartin")
        user.goto("/requests/new/new_token")
        user.get_by_label("Software token").check()
        user.get_by_label("Token model").select_option("AUTHAPP")
        user.get_by_label("Justification").fill("I travel and need a phone token.")
        user.get_by_role("button", name="Submit request").click()
        user.wait_for_url(re.compile(r".*/requests/\d+$"))
        request_id = int(user.url.rsplit("/", 1)[1])

        approver = holder["page"] = open_page("hbernard")
        open_task_of(approver, request_id, "Approve request")
        approver.get_by_role("button", name="Approve").click()
        distributor = holder["page"] = open_page("lrossi")
        open_task_of(distributor, request_id, "Deliver software token")
        distributor.get_by_label("Delivery method").select_option("activation_email")
        distributor.get_by_role("button", name="Complete task").click()
        distributor.wait_for_url(re.compile(r".*/inbox$"))

        holder["page"] = user
        user.goto(f"/requests/{request_id}")
        user.get_by_role("link", name="Open the activation page").click()
        user.get_by_role("button", name="Show my QR code").click()
        assert user.locator(".qr svg").count() == 1
        uri = user.locator("[data-otpauth]").text_content().strip()
        secret = parse_qs(urlsplit(uri).query)["secret"][0]
        user.get_by_label("Code shown by the app").fill(pyotp.TOTP(secret).now())
        user.get_by_role("button", name="Enable").click()
        user.wait_for_url(re.compile(r".*/tokens$"))
        assert "is enabled" in user.locator(".flashes").inner_text()


def test_modeler_changes_a_label_and_deploys_version_two(open_page):
    holder: dict = {}
    with screenshot_on_failure(holder, "modeler"):
        admin = holder["page"] = open_page("admin")
        admin.goto("/admin/modeler/process/group_membership")
        admin.wait_for_selector("form[data-modeler][data-ready=true]")
        label = "Approve group membership"
        admin.evaluate(
            """(label) => {
                const modeler = window.consoleEditor.editor;
                const registry = modeler.get('elementRegistry');
                const modeling = modeler.get('modeling');
                modeling.updateLabel(registry.get('approve_request'), label);
            }""",
            label,
        )
        admin.get_by_role("button", name="Validate").click()
        admin.wait_for_selector(".report")
        assert "Valid: ready to deploy" in admin.locator(".report").inner_text()

        admin.wait_for_selector("form[data-modeler][data-ready=true]")
        admin.get_by_role("button", name="Deploy as new version").click()
        admin.wait_for_url(re.compile(r".*/admin/definitions/group_membership$"))
        heading = admin.locator("h1").inner_text()
        assert "version 2" in heading
        assert "Deployed group_membership version 2" in admin.content()

        admin.goto("/admin/definitions/group_membership?from=1&to=2")
        diff = admin.locator(".diff").inner_text()
        assert f"name 'Approve request' -> '{label}'" in diff


def test_request_diagram_highlights_the_current_step(open_page):
    holder: dict = {}
    with screenshot_on_failure(holder, "diagram_highlight"):
        user = holder["page"] = open_page("jdoe")
        request_id = submit_hardware_request(user)
        user.goto(f"/requests/{request_id}")
        wait_for_diagram(user)
        current = user.locator(
            "#diagram .djs-element.highlight-current[data-element-id=approve_request]"
        )
        assert current.count() == 1
        done = user.locator(
            "#diagram .djs-element.highlight-completed"
            "[data-element-id=request_submitted]"
        )
        assert done.count() == 1


PHONE_WIDTH = 375
NARROW_PAGES = [
    ("tadmin", "/admin/tokens"),
    ("admin", "/admin/users"),
    ("admin", "/admin/mail/templates/rejected"),
    ("hbernard", "/inbox"),
    ("admin", "/admin/instances"),
    ("admin", "/admin/mail/outbox"),
]


@pytest.mark.parametrize(("username", "path"), NARROW_PAGES)
def test_pages_fit_a_phone_screen(open_page, live_server, username, path):
    with live_server.database.write() as session:
        from engine.provisioning import requests as provisioning

        provisioning.submit_request(
            session,
            actor=actor_for(session, "jdoe"),
            request_type="new_token",
            form={
                "token_class": "hardware",
                "token_model": "SID700",
                "shipping_address": "1 Rue de la Paix, 75002 Paris",
                "justification": "I start in the Paris office on Monday.",
            },
            settings=live_server.settings,
        )
    holder: dict = {}
    name = "phone_" + path.strip("/").replace("/", "_")
    with screenshot_on_failure(holder, name):
        page = holder["page"] = open_page(username, width=PHONE_WIDTH)
        page.goto(path)

        assert page.evaluate("document.documentElement.scrollWidth") == PHONE_WIDTH
        # Wide tables may scroll in their own box; stacked ones must fit.
        past_the_edge = page.evaluate(
            """() => [...document.querySelectorAll('main input, main select,'
                + ' main textarea, main button, main td')]
              .filter(e => e.offsetParent !== null
                && !(e.closest('.table-wrap') && !e.closest('.table-stack'))
                && e.getBoundingClientRect().right > window.innerWidth)
              .map(e => e.outerHTML.slice(0, 80))"""
        )
        assert past_the_edge == []


def test_claim_is_within_reach_in_the_inbox_on_a_phone(open_page, live_server):
    holder: dict = {}
    with screenshot_on_failure(holder, "phone_inbox_claim"):
        user = holder["page"] = open_page("jdoe", width=PHONE_WIDTH)
        request_id = submit_hardware_request(user)
        page = holder["page"] = open_page("hbernard", width=PHONE_WIDTH)
        page.goto("/inbox")
        claim = page.get_by_role(
            "button", name=f"Claim Approve request of request {request_id}"
        )

        box = claim.bounding_box()
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE_WIDTH
        claim.click()
        page.wait_for_url(re.compile(r".*/inbox$"))
        assert page.get_by_text("You took 'Approve request'").is_visible()


LEAVING_IS_QUESTIONED = """() => {
    const event = new Event('beforeunload', {cancelable: true});
    window.dispatchEvent(event);
    return event.defaultPrevented;
}"""


def test_modeler_asks_before_leaving_unsaved_changes(open_page):
    holder: dict = {}
    with screenshot_on_failure(holder, "modeler_unsaved"):
        admin = holder["page"] = open_page("admin")
        admin.goto("/admin/modeler/process/group_membership")
        admin.wait_for_selector("form[data-modeler][data-ready=true]")
        assert admin.evaluate(LEAVING_IS_QUESTIONED) is False

        admin.locator("#canvas").click(position={"x": 5, "y": 5})
        admin.evaluate(
            """() => {
                const modeler = window.consoleEditor.editor;
                const task = modeler.get('elementRegistry').get('approve_request');
                modeler.get('modeling').updateLabel(task, 'Approve membership');
            }"""
        )

        assert admin.evaluate(LEAVING_IS_QUESTIONED) is True
        dialogs = []
        admin.on(
            "dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss())
        )
        admin.close(run_before_unload=True)
        admin.wait_for_timeout(500)
        assert dialogs == ["beforeunload"]


def test_new_diagram_is_executable_validates_and_deploys_without_a_prompt(
    open_page,
):
    holder: dict = {}
    with screenshot_on_failure(holder, "modeler_new"):
        admin = holder["page"] = open_page("admin")
        admin.goto("/admin/modeler/new")
        admin.wait_for_selector("form[data-modeler][data-ready=true]")
        admin.get_by_label("File name").fill("first_process.bpmn")

        admin.get_by_role("button", name="Validate").click()
        admin.wait_for_selector(".report")
        report = admin.locator(".report").inner_text()
        assert "Valid: ready to deploy" in report
        assert "Process_1: would become version 1" in report
        admin.wait_for_selector("form[data-modeler][data-ready=true]")
        assert (
            "Your changes are not deployed yet."
            in admin.locator("[data-modeler-status]").inner_text()
        )
        assert admin.evaluate(LEAVING_IS_QUESTIONED) is True

        dialogs = []
        admin.on(
            "dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept())
        )
        admin.get_by_role("button", name="Deploy as new version").click()
        admin.wait_for_url(re.compile(r".*/admin/deployments$"))
        assert "Deployed Process_1 version 1." in admin.content()
        assert dialogs == []
