"""Benchmark: the engine's request lifecycle against bare SpiffWorkflow.

One lifecycle is what a new hardware token request does: start, then three
user-task completions (two approvals and a distribution). The script runs in
one process and prints:

* lifecycles per second through the engine API on a SQLite file;
* lifecycles per second on bare SpiffWorkflow in memory, with a JSON
  round trip of the whole workflow between steps (what any persistence
  must do at least), and the ratio of the two;
* SQL statements and commits per lifecycle;
* the cost of one completion with 1,000 and with 100,000 stored instances.

Usage: python bench/engine_bench.py [--lifecycles N] [--large 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.camunda.parser import CamundaParser  # noqa: E402
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

from engine import deployments, instances, migrate  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.identity import Actor  # noqa: E402
from engine.models import HumanTask, ProcessInstance, TaskCandidate  # noqa: E402

DIAGRAM = Path(__file__).with_name("lifecycle.bpmn")
KEY = "bench_lifecycle"
REQUESTER = Actor("requester", "acme/emea")
APPROVERS = [
    Actor("approver1", "acme", (("request_approver", "acme"),)),
    Actor("approver2", "acme", (("request_approver", "acme"),)),
]
DISTRIBUTOR = Actor("distributor", "acme", (("token_distributor", "acme"),))
STEPS = [
    (APPROVERS[0], {"decision": "approve", "comment": "fine"}),
    (APPROVERS[1], {"decision": "approve"}),
    (DISTRIBUTOR, {"serial_number": "000123456"}),
]


class Counter:
    def __init__(self, database: Database):
        self.statements = 0
        self.commits = 0
        event.listen(database.engine, "before_cursor_execute", self._statement)
        event.listen(database.engine, "commit", self._commit)

    def _statement(self, *args):
        self.statements += 1

    def _commit(self, *args):
        self.commits += 1


def prepare(url: str) -> Database:
    database = Database(url)
    migrate.upgrade(database)
    with database.write() as session:
        deployments.deploy(
            session,
            deployments.read_paths([DIAGRAM]),
            deployed_by="bench",
            source="bench",
        )
    return database


def engine_lifecycle(database: Database) -> None:
    with database.write() as session:
        instance = instances.start_instance(
            session, KEY, actor=REQUESTER, variables={"token_model": "SID700"}
        )
        instance_id = instance.id
    for actor, data in STEPS:
        with database.write() as session:
            task_id = session.scalar(
                select(HumanTask.id).where(
                    HumanTask.instance_id == instance_id, HumanTask.status == "open"
                )
            )
            instances.complete_task(session, task_id, actor=actor, data=data)


def run_engine_lifecycles(n: int, db_url: str | None = None) -> dict:
    """Run ``n`` engine lifecycles; return the rate, statements and commits."""
    with tempfile.TemporaryDirectory() as tmp:
        database = prepare(db_url or f"sqlite:///{tmp}/bench.sqlite3")
        engine_lifecycle(database)  # warm the spec cache and compiled scripts
        counter = Counter(database)
        started = time.perf_counter()
        for _ in range(n):
            engine_lifecycle(database)
        elapsed = time.perf_counter() - started
        database.dispose()
    return {
        "lifecycles": n,
        "per_second": n / elapsed,
        "statements": counter.statements / n,
        "commits": counter.commits / n,
    }


def run_bare_lifecycles(n: int) -> dict:
    parser = CamundaParser()
    parser.add_bpmn_file(str(DIAGRAM))
    spec = parser.get_spec(KEY)
    serializer = BpmnWorkflowSerializer(
        BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG)
    )

    def lifecycle():
        workflow = BpmnWorkflow(spec)
        workflow.task_tree.data.update({"token_model": "SID700"})
        workflow.do_engine_steps()
        state = serializer.serialize_json(workflow)
        for _actor, data in STEPS:
            workflow = serializer.deserialize_json(state)
            task = workflow.get_next_task(state=TaskState.READY, manual=True)
            task.data.update(data)
            task.run()
            workflow.do_engine_steps()
            state = serializer.serialize_json(workflow)
        assert workflow.completed

    lifecycle()
    started = time.perf_counter()
    for _ in range(n):
        lifecycle()
    return {"lifecycles": n, "per_second": n / (time.perf_counter() - started)}


def completion_cost(stored: int, samples: int = 100) -> dict:
    """Median time of one completion with ``stored`` instances in the database.

    The stored instances are copies of a real waiting instance, inserted in
    bulk: what matters is that lookups and locks do not scan them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        database = prepare(f"sqlite:///{tmp}/bench.sqlite3")
        with database.write() as session:
            template = instances.start_instance(session, KEY, actor=REQUESTER)
            template_task = session.scalars(
                select(HumanTask).where(HumanTask.instance_id == template.id)
            ).one()
            row = {
                c: getattr(template, c)
                for c in (
                    "definition_id",
                    "process_key",
                    "initiator",
                    "domain_path",
                    "status",
                    "state",
                    "serializer_version",
                    "created_at",
                    "updated_at",
                )
            }
        batch = 5000
        with database.write() as session:
            next_id = session.scalar(select(func.max(ProcessInstance.id))) + 1
        while next_id <= stored:
            count = min(batch, stored - next_id + 1)
            ids = list(range(next_id, next_id + count))
            with database.write() as session:
                session.execute(
                    insert(ProcessInstance), [{**row, "id": i} for i in ids]
                )
                session.execute(
                    insert(HumanTask),
                    [
                        {
                            "id": f"00000000-0000-4000-8000-{i:012d}",
                            "instance_id": i,
                            "process_key": KEY,
                            "task_spec": "approve_1",
                            "name": template_task.name,
                            "domain_path": "acme/emea",
                            "form": template_task.form,
                            "status": "open",
                            "created_at": template_task.created_at,
                            "saved_data": {},
                        }
                        for i in ids
                    ],
                )
                session.execute(
                    insert(TaskCandidate),
                    [
                        {
                            "task_id": f"00000000-0000-4000-8000-{i:012d}",
                            "kind": "group",
                            "name": "request_approver",
                        }
                        for i in ids
                    ],
                )
            next_id += count

        with database.engine.connect() as connection:
            # Fold the bulk load into the database file first, so that the
            # samples do not pay for checkpointing rows they never wrote.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        timings = []
        for _ in range(samples):
            with database.write() as session:
                instance = instances.start_instance(session, KEY, actor=REQUESTER)
                task_id = session.scalar(
                    select(HumanTask.id).where(
                        HumanTask.instance_id == instance.id, HumanTask.status == "open"
                    )
                )
            started = time.perf_counter()
            with database.write() as session:
                instances.complete_task(
                    session, task_id, actor=APPROVERS[0], data={"decision": "approve"}
                )
            timings.append(time.perf_counter() - started)
        with database.read() as session:
            total = session.scalar(select(func.count()).select_from(ProcessInstance))
        database.dispose()
    return {"stored": total, "median_ms": statistics.median(timings) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()

    engine = run_engine_lifecycles(args.lifecycles)
    bare = run_bare_lifecycles(args.lifecycles)
    small = completion_cost(args.small)
    large = completion_cost(args.large)
    result = {
        "engine": engine,
        "bare": bare,
        "ratio": engine["per_second"] / bare["per_second"],
        "completion_small": small,
        "completion_large": large,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"engine API on SQLite:   {engine['per_second']:8.1f} lifecycles/s")
    print(f"bare SpiffWorkflow:     {bare['per_second']:8.1f} lifecycles/s")
    print(f"ratio engine/bare:      {result['ratio']:8.2f}")
    print(
        f"per lifecycle:          {engine['statements']:8.1f} SQL statements, "
        f"{engine['commits']:.1f} commits"
    )
    print(
        f"one completion, {small['stored']:>7,} instances stored: "
        f"{small['median_ms']:6.2f} ms (median)"
    )
    print(
        f"one completion, {large['stored']:>7,} instances stored: "
        f"{large['median_ms']:6.2f} ms (median)"
    )


if __name__ == "__main__":
    main()
