"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from helpers_api import Api, make_api, make_app, serve
from sqlalchemy import update

from engine import migrate
from engine import serve as serving
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
    # The newest migration is the one an empty database misses last.
    newest = sorted(migrate.pending_revisions(database))[-1]
    assert newest in reason
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


ME_401 = 'method="GET",route="/api/v1/me",status="401"'


def _scrapes_by_worker(server, at_least: int = 2, tries: int = 60) -> dict[int, set]:
    """Scrape /metrics until ``at_least`` workers answered; return counts by pid."""
    counts: dict[int, set[float]] = {}
    for _ in range(tries):
        before = len(server.log_lines())
        status, text = server.get("/metrics")
        assert status == 200
        value = (
            metric(text, "provisioning_http_requests_total", ME_401)
            if ME_401 in text
            else 0.0
        )
        counts.setdefault(_answering_pid(server, before), set()).add(value)
        if len(counts) >= at_least:
            break
    return counts


def _answering_pid(server, before: int) -> int:
    """Return the worker whose access line for /metrics follows line ``before``."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        # gunicorn logs the access after sending the answer.
        for line in server.log_lines()[before:]:
            record = json.loads(line)
            if record.get("path") == "/metrics":
                return record["worker_pid"]
        time.sleep(0.05)
    raise AssertionError("No access line for the /metrics scrape.")


def test_request_counts_add_up_across_gunicorn_workers(sqlite_database, tmp_path):
    with serve(sqlite_database, tmp_path, "--log-format", "json", workers=2) as server:
        for _ in range(10):
            assert server.get("/api/v1/me")[0] == 401
        counts = _scrapes_by_worker(server)

    assert len(counts) == 2, f"one worker answered every scrape: {counts}"
    assert list(counts.values()) == [{10.0}, {10.0}]


def test_serve_leaves_no_metrics_directory_behind(sqlite_database, tmp_path):
    with serve(sqlite_database, tmp_path, env={"TMPDIR": str(tmp_path)}) as server:
        server.get("/api/v1/me")
        [metrics_dir] = tmp_path.glob("provisioning-metrics-*")
        assert list(metrics_dir.glob("counter_*.db"))

    assert list(tmp_path.glob("provisioning-metrics-*")) == []


def test_given_metrics_directory_is_emptied_of_an_earlier_run(tmp_path):
    stale = tmp_path / "metrics" / "counter_4242.db"
    stale.parent.mkdir()
    stale.write_bytes(b"counts of yesterday")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(stale.parent)}

    path, created = serving.prepare_metrics_dir(environ)

    assert (path, created) == (stale.parent, False)
    assert list(path.iterdir()) == []


def test_without_a_directory_each_start_gets_a_fresh_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    first, second = {}, {}

    one, created = serving.prepare_metrics_dir(first)
    other, _ = serving.prepare_metrics_dir(second)

    assert created
    assert one != other and one.parent == other.parent == tmp_path
    assert first == {"PROMETHEUS_MULTIPROC_DIR": str(one)}


def test_a_worker_that_exits_is_marked_dead(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = tmp_path / "gauge_livesum_4242.db"
    counts = tmp_path / "counter_4242.db"
    live.write_bytes(b"")
    counts.write_bytes(b"")

    serving._mark_worker_dead(None, SimpleNamespace(pid=4242))

    assert not live.exists()
    assert counts.exists()  # the requests it answered still count
