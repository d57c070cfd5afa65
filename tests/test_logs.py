"""Log set-up of the entry points: JSON lines everywhere, SpiffWorkflow quiet."""

from __future__ import annotations

import json
import logging

import pytest
from helpers_api import serve
from helpers_provisioning import make_org

from engine import logs


@pytest.fixture
def restored_logging(monkeypatch):
    """Let a test call configure_logging; put pytest's logging back afterwards."""
    root = logging.getLogger()
    spiff = logging.getLogger(logs.SPIFF_LOGGER)
    handlers, root_level, spiff_level = root.handlers[:], root.level, spiff.level
    monkeypatch.setattr(logs, "_configured_format", None)
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    spiff.setLevel(spiff_level)


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_spiff_task_state_changes_stay_out_of_the_log(
    restored_logging, database, settings, capsys
):
    logs.configure_logging("json")
    make_org(database, settings).new_hardware("jdoe")

    records = _records(capsys.readouterr().err)

    assert any(r["message"].startswith("Started instance") for r in records)
    assert [r for r in records if r["logger"].startswith("spiff")] == []


def test_verbose_logging_lets_spiff_through(
    restored_logging, database, settings, capsys
):
    logs.configure_logging("json", logging.DEBUG)
    make_org(database, settings).new_hardware("jdoe")

    records = _records(capsys.readouterr().err)

    assert any(
        r["logger"] == "spiff.task" and r["message"].startswith("State changed to")
        for r in records
    )


def test_spiff_warnings_still_reach_the_log(restored_logging):
    logs.configure_logging("text")

    assert logging.getLogger("spiff.task").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("spiff.task").isEnabledFor(logging.INFO)
    assert logging.getLogger("engine.instances").isEnabledFor(logging.INFO)


def test_serve_with_json_logs_writes_gunicorn_lines_as_json(sqlite_database, tmp_path):
    with serve(sqlite_database, tmp_path, "--log-format", "json") as server:
        server.get("/api/v1/me?x=1")

    records = _records(server.log.read_text())  # fails on any line not JSON

    assert any(
        r["logger"] == "gunicorn.error"
        and r["message"] == f"Listening at: {server.url} ({server.process.pid})"
        for r in records
    )
    [access] = [r for r in records if r.get("path") == "/api/v1/me"]
    assert access["logger"] == "gunicorn.access"
    assert access["message"] == "GET /api/v1/me 401"
    assert (access["method"], access["query"], access["status"]) == (
        "GET",
        "x=1",
        401,
    )
    assert access["duration_ms"] >= 0
