"""Two completions of one task at the same time: exactly one wins."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers_engine import (
    APPROVER,
    REQUEST_DOMAIN,
    REQUESTER,
    SECOND_APPROVER,
    add_actors,
    count,
    deploy,
    start,
    task_of,
)
from sqlalchemy import select, text

from engine import instances
from engine.errors import TaskAlreadyCompleted
from engine.models import HistoryEntry, HumanTask, ProcessInstance

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / ".venv" / "bin" / "provisioning"
ALREADY = re.compile(
    r"^Task 'First approval' of instance (\d+) was already completed by (bob|carol) "
    r"at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC; nothing was changed\. Reload the "
    r"request to see its current state\.$"
)


@pytest.fixture
def waiting_task(database) -> tuple[int, str]:
    deploy(database, "approval.bpmn")
    instance_id = start(database, "approval", domain_path=REQUEST_DOMAIN)
    return instance_id, task_of(database, instance_id, "approve1").id


def assert_one_completion(database, instance_id, task_id, winner, message):
    match = ALREADY.match(message)
    assert match, message
    with database.read() as session:
        task = session.get(HumanTask, task_id)
        assert (task.status, task.completed_by) == ("completed", winner)
        assert match.groups() == (
            str(instance_id),
            winner,
            f"{task.completed_at:%Y-%m-%d %H:%M:%S}",
        )
        completions = session.scalars(
            select(HistoryEntry).where(
                HistoryEntry.instance_id == instance_id,
                HistoryEntry.action == "task_completed",
            )
        ).all()
        assert [(e.actor, e.task_id) for e in completions] == [(winner, task_id)]
        # The winner's step is whole: the next task was created once.
        assert session.get(ProcessInstance, instance_id).status == "running"
    assert count(database, HumanTask, HumanTask.task_spec == "distribute") == 1


def test_two_threads_complete_one_task(database, waiting_task):
    instance_id, task_id = waiting_task
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def attempt(actor):
        barrier.wait()
        try:
            with database.write() as session:
                instances.complete_task(
                    session, task_id, actor=actor, data={"decision": "approve"}
                )
            outcomes[actor.username] = "completed"
        except TaskAlreadyCompleted as err:
            outcomes[actor.username] = err

    threads = [
        threading.Thread(target=attempt, args=(a,)) for a in (APPROVER, SECOND_APPROVER)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    winners = [name for name, o in outcomes.items() if o == "completed"]
    losers = [o for o in outcomes.values() if isinstance(o, TaskAlreadyCompleted)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert_one_completion(database, instance_id, task_id, winners[0], str(losers[0]))


def _hold_instance_lock(database, instance_id):
    """Open a transaction that holds the lock a completion needs; return it."""
    connection = database.engine.connect()
    if database.is_sqlite:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        transaction = connection.begin()
    else:
        transaction = connection.begin()
        connection.execute(
            text("SELECT id FROM process_instance WHERE id = :id FOR UPDATE"),
            {"id": instance_id},
        )
    return connection, transaction


def _wait_until_blocked(database, app_name: str, expected: int) -> None:
    """Wait until ``expected`` PostgreSQL sessions of ``app_name`` wait on a lock."""
    deadline = time.monotonic() + 60
    with database.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :name AND wait_event_type = 'Lock'"
                ),
                {"name": app_name},
            )
            if waiting >= expected:
                return
            connection.rollback()
            time.sleep(0.05)
    raise AssertionError(f"{expected} completions never reached the instance lock")


def test_two_processes_complete_one_task(database, waiting_task):
    """Two `provisioning complete` commands race; the database lock decides."""
    instance_id, task_id = waiting_task
    add_actors(database, REQUESTER, APPROVER, SECOND_APPROVER)
    app_name = f"engine-race-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database.url.render_as_string(hide_password=False),
        "PGAPPNAME": app_name,
        "LOG_LEVEL": "WARNING",
    }

    connection, transaction = _hold_instance_lock(database, instance_id)
    try:
        commands = [
            subprocess.Popen(
                [
                    str(PROVISIONING),
                    "complete",
                    task_id,
                    "--user",
                    user,
                    "--data",
                    '{"decision": "approve"}',
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for user in ("bob", "carol")
        ]
        if not database.is_sqlite:
            _wait_until_blocked(database, app_name, expected=2)
    finally:
        transaction.rollback()
        connection.close()
    results = {
        user: (p.wait(timeout=120), *p.communicate())
        for user, p in zip(("bob", "carol"), commands, strict=True)
    }

    winners = [u for u, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = [r for r in results.values() if r[0] != 0]
    code, out, err = loser
    assert (code, out) == (1, ""), loser
    assert "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("Error: "), err
    assert results[winners[0]][1] == (
        f"Completed task {task_id}; instance {instance_id} is running.\n"
    )
    assert_one_completion(
        database, instance_id, task_id, winners[0], last_line[len("Error: ") :]
    )
