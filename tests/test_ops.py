"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from helpers_api import Api, make_api, make_app
from sqlalchemy import update

from engine.config import Settings
from engine.db import Database
from engine.models import Timer, utcnow


@pytest.fixture
def api(database, settings) -> Api:
    return make_api(database, settings)


def metric(text: str, name: str, labels: str = "") -> float:
    """Return the value of one sample of the exposition text."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))


def test_healthz_and_readyz_answer_ok_on_a_current_database(api):
    assert api.client.get("/healthz").get_json() == {"status": "ok"}
    ready = api.client.get("/readyz")

    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready"}


def test_readyz_is_503_while_migrations_are_missing(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    settings = Settings(
        database_url=str(database.url), instance_path=tmp_path, secret_key="x"
    )
    client = make_app(database, settings).test_client()

    response = client.get("/readyz")

    assert response.status_code == 503
    reason = response.get_json()["reason"]
    assert reason.startswith(
        "database schema is behind; run `provisioning db upgrade` (missing "
    )
    assert "0005_api_tokens" in reason
    database.dispose()


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    settings = Settings(
        database_url=str(database.url), instance_path=tmp_path, secret_key="x"
    )
    client = make_app(database, settings).test_client()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("database unreachable: ")
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_and_status(api):
    before = api.client.get("/metrics").get_data(as_text=True)
    labels = 'method="GET",route="/api/v1/tasks/<task_id>",status="404"'
    start = (
        metric(before, "provisioning_http_requests_total", labels)
        if labels in before
        else 0.0
    )

    api.call("GET", "/api/v1/tasks/no-such-task", "anna")
    after = api.client.get("/metrics").get_data(as_text=True)

    assert metric(after, "provisioning_http_requests_total", labels) == start + 1
    assert "provisioning_http_request_duration_seconds_bucket" in after


def test_metrics_report_queues_outbox_incidents_and_due_timers(api):
    api.org.new_hardware("jdoe")
    text = api.client.get("/metrics").get_data(as_text=True)

    assert metric(text, "provisioning_open_tasks", 'queue="request_approver"') == 1
    assert metric(
        text, "provisioning_open_tasks", 'queue="token_distributor"'
    ) == 0 or ('queue="token_distributor"' not in text)
    assert metric(text, "provisioning_outbox_backlog") >= 1
    assert metric(text, "provisioning_open_incidents") == 0
    assert metric(text, "provisioning_timers_due") == 0

    with api.org.database.write() as session:
        session.execute(update(Timer).values(due_at=utcnow() - timedelta(minutes=1)))
    text = api.client.get("/metrics").get_data(as_text=True)

    assert metric(text, "provisioning_timers_due") == 3  # reminder, escalation, timeout
