"""The ``provisioning`` command line, run with click's CliRunner."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_engine import (
    APPROVER,
    DATA,
    DISTRIBUTOR,
    REQUESTER,
    add_actors,
    count,
    open_tasks,
)

from engine import migrate
from engine.cli import main
from engine.db import Database
from engine.models import Deployment, HistoryEntry, ProcessInstance

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(database, tmp_path):
    """Run a command against the test database; return the click Result."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {
        "DATABASE_URL": database.url.render_as_string(hide_password=False),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "LOG_LEVEL": "WARNING",
    }

    def run(*args: str, url: str | None = None, environ: dict | None = None):
        runner = CliRunner()
        environment = {**env, "DATABASE_URL": url} if url else {**env}
        environment.update(environ or {})
        return runner.invoke(main, list(args), env=environment)

    yield run
    # The CLI configures logging for a process; give pytest its handlers back.
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def people(database):
    add_actors(database, REQUESTER, APPROVER, DISTRIBUTOR)


def deploy_approval(cli):
    result = cli("deploy", str(DATA / "approval.bpmn"), "--user", "designer")
    assert result.exit_code == 0, result.output


def started(cli) -> int:
    result = cli("start", "approval", "--user", "alice", "--business-key", "REQ-1")
    assert result.exit_code == 0, result.output
    return int(re.match(r"Started instance (\d+) ", result.stdout).group(1))


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def test_db_upgrade_on_a_migrated_database_changes_nothing(cli, database):
    result = cli("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Database is up to date (")
    assert migrate.pending_revisions(database) == set()


def test_db_upgrade_creates_a_new_sqlite_database(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'provisioning.sqlite3'}"

    result = cli("db", "upgrade", url=url)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Database is up to date ({url}).\n"
    fresh = Database(url)
    try:
        assert migrate.pending_revisions(fresh) == set()
    finally:
        fresh.dispose()


def test_deploy_prints_each_key_and_twice_deploys_nothing(cli, database):
    paths = [
        str(DATA / n)
        for n in ("approval.bpmn", "engine_policy.dmn", "engine_uses_policy.bpmn")
    ]

    first = cli("deploy", *paths, "--user", "designer")
    second = cli("deploy", *paths, "--user", "designer")

    assert first.exit_code == 0, first.output
    assert first.stdout == (
        "process   approval                       version 1    new\n"
        "process   engine_uses_policy             version 1    new\n"
        "decision  engine_policy                  version 1    new\n"
        "Deployment 1 stored.\n"
    )
    assert second.exit_code == 0, second.output
    assert second.stdout == (
        "process   approval                       version 1    unchanged\n"
        "process   engine_uses_policy             version 1    unchanged\n"
        "decision  engine_policy                  version 1    unchanged\n"
        "Nothing changed; no deployment stored.\n"
    )
    assert count(database, Deployment) == 1


def test_deploy_a_changed_file_prints_version_2(cli, tmp_path):
    path = tmp_path / "approval.bpmn"
    path.write_bytes((DATA / "approval.bpmn").read_bytes())
    cli("deploy", str(path), "--user", "designer")
    path.write_bytes(path.read_bytes().replace(b"First approval", b"Approval 1"))

    result = cli("deploy", str(path), "--user", "designer")

    assert result.stdout == (
        "process   approval                       version 2    new\n"
        "Deployment 2 stored.\n"
    )


def test_deploy_refusal_exits_1_with_the_problems(cli, database):
    result = cli("deploy", str(DATA / "engine_bad_unroutable.bpmn"))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: Deployment refused, nothing was deployed (1 problem):\n"
        "  engine_bad_unroutable.bpmn, line 5, element 'nobody': this user task "
        "cannot be routed to anyone; put it in a lane or set candidate groups, "
        "candidate users or an assignee.\n"
    )
    assert count(database, Deployment) == 0


def test_deploy_a_missing_path(cli, tmp_path):
    result = cli("deploy", str(tmp_path / "gone.bpmn"))

    assert_one_line_error(
        result,
        f"{tmp_path / 'gone.bpmn'} does not exist; give a .bpmn or .dmn file or a "
        "folder.",
    )


def test_definitions_lists_versions(cli):
    assert cli("definitions").stdout == (
        "No process is deployed; run `provisioning deploy bpmn/`.\n"
    )
    deploy_approval(cli)

    result = cli("definitions")

    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"approval {22} version 1    Approval {33}"
        r"deployed \d{4}-\d\d-\d\d \d\d:\d\d by designer\n",
        result.stdout,
    ), result.stdout


def test_start_tasks_complete_show(cli, database, people):
    deploy_approval(cli)
    instance_id = started(cli)

    tasks = cli("tasks", "--user", "bob")
    assert tasks.exit_code == 0, tasks.output
    (task,) = open_tasks(database, instance_id)
    assert tasks.stdout.startswith(f"{task.id}  instance {instance_id:<6} ")
    assert "First approval" in tasks.stdout
    assert cli("tasks", "--user", "alice").stdout == "No open task for alice.\n"

    done = cli(
        "complete", task.id, "--user", "bob", "--data", '{"decision": "approve"}'
    )
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        f"Completed task {task.id}; instance {instance_id} is running.\n"
    )

    show = cli("show", str(instance_id))
    assert show.exit_code == 0, show.output
    lines = show.stdout.splitlines()
    assert lines[0] == f"Instance {instance_id}: approval version 1, running"
    assert "started by alice" in lines[1] and "business key REQ-1" in lines[1]
    assert lines[2] == "Open tasks:"
    assert "Distribute  queue token_distributor  assignee -" in lines[3]
    assert lines[4] == "History:"
    assert [line.split()[3] for line in lines[5:]] == [
        "instance_started",
        "task_created",
        "task_completed",
        "task_created",
    ]


def test_complete_with_bad_json_is_one_line_and_writes_nothing(cli, database, people):
    deploy_approval(cli)
    instance_id = started(cli)
    (task,) = open_tasks(database, instance_id)
    before = count(database, HistoryEntry)

    result = cli("complete", task.id, "--user", "bob", "--data", "{decision: 1}")

    assert_one_line_error(
        result,
        "--data is not valid JSON (Expecting property name enclosed in double "
        'quotes at column 2); give a JSON object such as {"name": "value"}.',
    )
    assert count(database, HistoryEntry) == before


def test_complete_with_a_json_list_is_refused(cli, database, people):
    deploy_approval(cli)
    (task,) = open_tasks(database, started(cli))

    result = cli("complete", task.id, "--user", "bob", "--data", "[1, 2]")

    assert_one_line_error(
        result, '--data must be a JSON object such as {"name": "value"}.'
    )


def test_complete_with_invalid_form_data(cli, database, people):
    deploy_approval(cli)
    instance_id = started(cli)
    (task,) = open_tasks(database, instance_id)

    result = cli("complete", task.id, "--user", "bob", "--data", json.dumps({"x": 1}))

    assert_one_line_error(
        result,
        "The form has errors; correct them and submit again. x: 'x' is not a "
        "field of this task; the fields are: decision, comment.; decision: "
        "Decision is required.",
    )


def test_complete_refused_to_the_requester(cli, database, people):
    deploy_approval(cli)
    instance_id = started(cli)
    (task,) = open_tasks(database, instance_id)

    result = cli("complete", task.id, "--user", "alice", "--data", "{}")

    assert_one_line_error(
        result,
        f"You started REQ-{instance_id}, so you may not work its task 'First "
        "approval': separation of duties requires someone else to do it.",
    )


def test_unknown_user_and_instance(cli, people):
    deploy_approval(cli)

    assert_one_line_error(
        cli("start", "approval", "--user", "zed"),
        "No active user named 'zed'; check the spelling or create the user first.",
    )
    assert_one_line_error(
        cli("show", "999"), "Instance 999 does not exist; check the number."
    )


def test_cancel(cli, database, people):
    deploy_approval(cli)
    instance_id = started(cli)

    result = cli(
        "cancel", str(instance_id), "--user", "alice", "--reason", "Not needed"
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Cancelled instance {instance_id}.\n"
    with database.read() as session:
        assert session.get(ProcessInstance, instance_id).status == "cancelled"
    assert_one_line_error(
        cli("cancel", str(instance_id), "--user", "alice", "--reason", "again"),
        f"REQ-{instance_id} is already cancelled; nothing to cancel.",
    )


def test_deploy_a_folder_skips_a_subfolder_named_like_a_diagram(cli, tmp_path):
    folder = tmp_path / "diagrams"
    (folder / "old.bpmn").mkdir(parents=True)
    (folder / "approval.bpmn").write_bytes((DATA / "approval.bpmn").read_bytes())

    result = cli("deploy", str(folder), "--user", "designer")

    assert result.exit_code == 0, result.output
    assert "approval" in result.stdout


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"MAX_UPLOAD_BYTES": "abc"},
            "MAX_UPLOAD_BYTES='abc' is not a whole number; set it to an integer "
            "such as 2097152 or unset it to use the default.",
        ),
        (
            {"DATABASE_URL": "mysql://root@127.0.0.1/provisioning"},
            "DATABASE_URL names a mysql database, which this product does not "
            "support; use sqlite:///path/to/file.sqlite3 or "
            "postgresql://user@host/database.",
        ),
        (
            {"DATABASE_URL": "not a url"},
            "DATABASE_URL 'not a url' is not a database URL; use "
            "sqlite:///path/to/file.sqlite3 or postgresql://user@host/database.",
        ),
    ],
)
def test_a_bad_setting_is_one_line(cli, environ, message):
    result = cli("definitions", environ=environ)

    assert_one_line_error(result, message)


def test_worker_once(cli):
    result = cli("worker", "--once")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Handled 0 item(s).\n"


def test_database_not_migrated_is_one_line(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"

    result = cli("definitions", url=url)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: the database is not ready (no such table: process_definition); "
        "check DATABASE_URL and run `provisioning db upgrade`.\n"
    )


def test_deploy_the_product_folder_twice_in_a_new_process(database):
    """A fresh `provisioning` process knows the product's service topics."""
    env = {
        **os.environ,
        "DATABASE_URL": database.url.render_as_string(hide_password=False),
        "LOG_LEVEL": "WARNING",
    }

    def run():
        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "provisioning"), "deploy", "bpmn/"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first, second = run(), run()

    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith("Deployment 1 stored.\n")
    assert "new_token                      version 1    new\n" in first.stdout
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[-1] == "Nothing changed; no deployment stored."
    assert all(line.endswith("version 1    unchanged") for line in lines[:-1])
    assert count(database, Deployment) == 1
