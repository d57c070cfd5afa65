#!/usr/bin/env python3
"""Scale-out proof: several web servers and workers on one PostgreSQL.

Starts ``--servers`` gunicorn servers and ``--workers`` background workers on
127.0.0.1, all on a fresh PostgreSQL database of their own, with an SMTP
server (aiosmtpd) catching the mail. Concurrent users then drive requests
through their whole life over HTTP, each call to a server picked at random:

* requesters submit hardware token requests (and cancel some at once);
* approvers race each other for the approval steps (approving most, and
  rejecting some), distributors race for the distribution steps, so the same
  task is often completed by two people at the same moment.

Afterwards it checks the database and the mail received:

* every request reached a final state consistent with its process instance
  (no open task, no waiting timer left behind);
* no task was completed twice, and no completion that a client was told
  succeeded is missing (no lost completion);
* no token serial number was handed out twice;
* every e-mail in the outbox was sent, and received exactly once.

Prints a JSON report and exits 1 if a check failed. The database is dropped
at the end unless ``--keep``.

    python scripts/scale_out.py --servers 2 --workers 2 --users 20 --requests 200
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import api_tokens, deployments, migrate, product  # noqa: E402, F401
from engine.db import Database  # noqa: E402
from engine.identity import (  # noqa: E402
    REQUEST_APPROVER,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
    actor_for,
)
from engine.models import (  # noqa: E402
    HistoryEntry,
    HumanTask,
    ProcessInstance,
    TaskStatus,
    Timer,
    TimerStatus,
)
from engine.notifications.models import OutboxMessage, OutboxStatus  # noqa: E402
from engine.provisioning import directory, inventory  # noqa: E402
from engine.provisioning.inventory_models import Token  # noqa: E402
from engine.provisioning.request_models import ProvisioningRequest  # noqa: E402

DEFAULT_POSTGRES = os.environ.get(
    "SCALE_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres"
)
DOMAIN = "acme"
TEAM = "acme/emea"
HOME = "acme/emea/paris"
APPROVERS = 3
DISTRIBUTORS = 2
FINAL = {"completed", "rejected", "cancelled", "expired", "failed"}
END_EVENTS = {
    "completed": "request_completed",
    "rejected": "request_rejected",
}


# -- infrastructure: database, mail, processes ------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_database(admin_url: str) -> str:
    """Create a uniquely named database and return its URL."""
    name = f"scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class MailCatcher:
    """An SMTP server on 127.0.0.1 that records the Message-ID of every mail."""

    def __init__(self):
        self.message_ids: list[str] = []
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd
        for line in envelope.content.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("message-id:"):
                with self._lock:
                    self.message_ids.append(line.split(":", 1)[1].strip())
                break
        return "250 OK"

    def __enter__(self) -> MailCatcher:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def app_environment(url: str, smtp_port: int, instance: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": "scale-out-secret-key",
        "TOKEN_ENCRYPTION_KEY": "scale-out-token-encryption-key",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none",
        "SMTP_SENDER": "provisioning@example.org",
        "LOG_LEVEL": "WARNING",
    }


def _log_file(env: dict[str, str], name: str):
    return open(Path(env["INSTANCE_PATH"]) / f"{name}.log", "wb")  # noqa: SIM115


def start_server(env: dict[str, str], threads: int = 4, workers: int = 2):
    """Start gunicorn on a free port; return (process, base URL)."""
    port = free_port()
    log = _log_file(env, f"server-{port}")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--log-level",
            "warning",
            "web:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()  # the child keeps its own copy
    process.log_path = log.name
    return process, f"http://127.0.0.1:{port}"


def start_worker(env: dict[str, str], number: int):
    log = _log_file(env, f"worker-{number}")
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--interval", "0.3"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    process.log_path = log.name
    return process


def wait_ready(base_url: str, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = Path(process.log_path).read_text(errors="replace")
            raise RuntimeError(f"server {base_url} exited: {output[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server {base_url} was not ready after {timeout} s")


def stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- HTTP -------------------------------------------------------------------


@dataclass
class Client:
    """One person calling the API with their token, on random servers."""

    username: str
    token: str
    servers: list[str]
    rng: random.Random = field(default_factory=random.Random)
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.rng.choice(self.servers) + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode("utf-8", "replace")


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- the organisation -------------------------------------------------------


def set_up(database: Database, requesters: int, stock: int) -> dict[str, str]:
    """Create people, token stock and process models; return API tokens."""
    migrate.upgrade(database)
    expiry = (date.today() + timedelta(days=3 * 365)).isoformat()
    people = (
        [(f"user{i:03d}", HOME, ()) for i in range(1, requesters + 1)]
        + [(f"approver{i}", TEAM, (REQUEST_APPROVER,)) for i in range(1, 1 + APPROVERS)]
        + [
            (f"distributor{i}", TEAM, (TOKEN_DISTRIBUTOR,))
            for i in range(1, 1 + DISTRIBUTORS)
        ]
        + [("stock", DOMAIN, (TOKEN_ADMINISTRATOR,))]
    )
    tokens: dict[str, str] = {}
    with database.write() as session:
        for path in (DOMAIN, TEAM, HOME):
            directory.create_domain(session, path, actor="system")
        for username, domain, roles in people:
            directory.create_user(
                session,
                username=username,
                display_name=username.capitalize(),
                email=f"{username}@example.org",
                domain_path=domain,
                roles=[(role, domain) for role in roles],
                actor="system",
            )
        inventory.create_token_model(
            session, code="SID700", name="SID700 key fob", token_class="hardware"
        )
        rows = "".join(f"SC-{i:05d},SID700,{expiry}\n" for i in range(1, stock + 1))
        inventory.import_tokens_csv(
            session,
            actor_for(session, "stock"),
            "serial,model,expiry\n" + rows,
            domain_path=TEAM,
        )
        deployments.deploy(
            session,
            deployments.read_paths([ROOT / "bpmn"]),
            deployed_by="scale-out",
            source="scale-out script",
        )
        for username, _, _ in people:
            _, secret = api_tokens.create_token(
                session, username, name="scale-out", actor="system"
            )
            tokens[username] = secret
    return tokens


# -- the users --------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients were told, to compare with the database afterwards."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    submitted: list[int] = field(default_factory=list)
    #: task id -> username, for every completion answered 200
    completions: dict[str, str] = field(default_factory=dict)
    duplicate_successes: list[str] = field(default_factory=list)
    conflicts: int = 0
    #: (task id, username) of completions refused with 422 (see ``staff``)
    refused: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def completed(self, task_id: str, username: str) -> None:
        with self.lock:
            if task_id in self.completions:
                self.duplicate_successes.append(task_id)
            self.completions[task_id] = username

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def requester(client: Client, count: int, ledger: Ledger) -> None:
    for n in range(count):
        status, body = client.call(
            "POST",
            "/api/v1/requests",
            {
                "request_type": "new_token",
                "form": {
                    "token_class": "hardware",
                    "token_model": "SID700",
                    "shipping_address": f"{n} Rue de Rivoli, Paris",
                    "justification": f"Scale-out request {n} of {client.username}",
                },
            },
        )
        if status == 409:
            # One pending request of a kind per user: wait for it to end.
            time.sleep(0.2)
            continue
        if status != 201:
            ledger.error(f"submit by {client.username}: {status} {body}")
            continue
        with ledger.lock:
            ledger.submitted.append(body["id"])
        if body["id"] % 7 == 0:
            status, body = client.call(
                "POST", f"/api/v1/requests/{body['id']}/cancel", {"reason": "changed"}
            )
            if status not in (200, 409):
                ledger.error(f"cancel by {client.username}: {status} {body}")
        while True:
            status, shown = client.call("GET", f"/api/v1/requests/{body['id']}")
            if status != 200 or shown["status"] in FINAL:
                break
            time.sleep(0.1)


def staff(client: Client, ledger: Ledger, done: threading.Event) -> None:
    """Take open tasks of one's queues; several people race for each."""
    while not done.is_set():
        status, body = client.call("GET", "/api/v1/tasks?limit=20")
        if status != 200:
            ledger.error(f"tasks of {client.username}: {status} {body}")
            time.sleep(0.2)
            continue
        tasks = body["items"]
        if not tasks:
            time.sleep(0.05)
            continue
        task = client.rng.choice(tasks[:5])
        data = decision_for(task)
        status, answer = client.call(
            "POST", f"/api/v1/tasks/{task['id']}/complete", {"data": data}
        )
        if status == 200:
            ledger.completed(task["id"], client.username)
        elif status in (409, 403, 404):
            # Someone else took it, or separation of duties (a second step
            # for the same approver) refused it: both are expected here.
            with ledger.lock:
                ledger.conflicts += 1
        elif status == 422 and task["task_spec"] != "approve_request":
            # The distribution step checks the serial number before it locks
            # the request, so a distributor who loses the race hears that the
            # serial is taken; checked afterwards to be someone else's win.
            with ledger.lock:
                ledger.refused.append((task["id"], client.username))
        else:
            ledger.error(f"complete by {client.username}: {status} {answer}")


def decision_for(task: dict[str, Any]) -> dict[str, str]:
    if task["task_spec"] == "approve_request":
        if task["instance_id"] % 5 == 0:
            return {"decision": "reject", "comment": "Not this time."}
        return {"decision": "approve"}
    return {
        "serial_number": f"SC-{task['instance_id']:05d}",
        "carrier": "dhl",
        "tracking_number": f"T{task['instance_id']}",
    }


# -- checks -----------------------------------------------------------------


def check(database: Database, ledger: Ledger, mail: MailCatcher) -> dict[str, Any]:
    problems: list[str] = []
    with database.read() as session:
        requests = list(session.scalars(select(ProvisioningRequest)))
        statuses = collections.Counter(r.status for r in requests)
        for row in requests:
            instance = session.get(ProcessInstance, row.instance_id)
            if row.status not in FINAL:
                problems.append(f"request {row.id} is still {row.status}")
                continue
            expected_end = END_EVENTS.get(row.status)
            if expected_end and instance.end_event != expected_end:
                problems.append(
                    f"request {row.id} is {row.status} but its instance ended at "
                    f"{instance.end_event} ({instance.status})"
                )
            if row.status == "cancelled" and instance.status != "cancelled":
                problems.append(
                    f"request {row.id} cancelled, instance {instance.status}"
                )
        open_left = session.scalar(
            select(func.count())
            .select_from(HumanTask)
            .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
            .where(
                HumanTask.status == TaskStatus.OPEN,
                ProcessInstance.status.in_(("completed", "cancelled")),
            )
        )
        if open_left:
            problems.append(f"{open_left} open task(s) of ended instances")
        timers_left = session.scalar(
            select(func.count())
            .select_from(Timer)
            .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
            .where(
                Timer.status == TimerStatus.WAITING,
                ProcessInstance.status.in_(("completed", "cancelled")),
            )
        )
        if timers_left:
            problems.append(f"{timers_left} waiting timer(s) of ended instances")

        twice = session.execute(
            select(HistoryEntry.task_id, func.count())
            .where(HistoryEntry.action == "task_completed")
            .group_by(HistoryEntry.task_id)
            .having(func.count() > 1)
        ).all()
        problems += [f"task {t} completed {n} times" for t, n in twice]
        problems += [
            f"two clients told task {t} was theirs" for t in ledger.duplicate_successes
        ]
        completed_by = dict(
            session.execute(
                select(HumanTask.id, HumanTask.completed_by).where(
                    HumanTask.status == TaskStatus.COMPLETED
                )
            ).all()
        )
        for task_id, username in ledger.completions.items():
            if completed_by.get(task_id) != username:
                problems.append(
                    f"lost completion: {username} was told task {task_id} was "
                    f"completed, the database says {completed_by.get(task_id)}"
                )

        for task_id, username in ledger.refused:
            if completed_by.get(task_id) in (None, username):
                problems.append(
                    f"{username} was refused task {task_id} (422), yet nobody "
                    "else completed it"
                )

        serials = collections.Counter(
            session.scalars(
                select(Token.request_id).where(Token.request_id.is_not(None))
            )
        )
        problems += [f"request {r} got {n} tokens" for r, n in serials.items() if n > 1]
        completed_ids = {r.id for r in requests if r.status == "completed"}
        missing_tokens = completed_ids - set(serials)
        if missing_tokens:
            problems.append(
                f"completed requests without a token: {sorted(missing_tokens)}"
            )

        outbox = list(session.scalars(select(OutboxMessage)))
        unsent = [m.id for m in outbox if m.status != OutboxStatus.SENT]
        if unsent:
            problems.append(f"{len(unsent)} outbox message(s) not sent")
        received = collections.Counter(
            mid.strip("<>").split("@")[0].removeprefix("outbox-")
            for mid in mail.message_ids
        )
        for message in outbox:
            if message.status == OutboxStatus.SENT and received[message.id] != 1:
                problems.append(
                    f"mail {message.id} ({message.event}) received "
                    f"{received[message.id]} times"
                )
        strangers = set(received) - {m.id for m in outbox}
        if strangers:
            problems.append(
                f"{len(strangers)} mail(s) received that no outbox row sent"
            )

    return {
        "requests": len(requests),
        "statuses": dict(statuses),
        "completions_answered_200": len(ledger.completions),
        "lost_races_answered_409_403_404": ledger.conflicts,
        "lost_races_answered_422_serial_taken": len(ledger.refused),
        "mails_in_outbox": len(outbox),
        "mails_received": len(mail.message_ids),
        "client_errors": ledger.errors[:20],
        "problems": problems[:50],
        "ok": not problems and not ledger.errors,
    }


def all_settled(database: Database, expected: int) -> bool:
    with database.read() as session:
        pending = session.scalar(
            select(func.count())
            .select_from(ProvisioningRequest)
            .where(ProvisioningRequest.status.not_in(FINAL))
        )
        total = session.scalar(select(func.count()).select_from(ProvisioningRequest))
        mail_waiting = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))
            )
        )
    return total >= expected and pending == 0 and mail_waiting == 0


# -- the run ----------------------------------------------------------------


def run_scale_out(
    *,
    servers: int = 2,
    workers: int = 2,
    users: int = 6,
    requests: int = 10,
    admin_url: str = DEFAULT_POSTGRES,
    timeout: float = 600,
    keep: bool = False,
) -> dict[str, Any]:
    """Run the scale-out scenario and return its report (see the module doc)."""
    url = create_database(admin_url)
    database = Database(url)
    processes: list[subprocess.Popen] = []
    try:
        tokens = set_up(database, users, stock=requests * 2 + 10)
        with MailCatcher() as mail, tempfile.TemporaryDirectory() as instance:
            env = app_environment(url, mail.controller.port, Path(instance))
            started = [start_server(env) for _ in range(servers)]
            processes += [p for p, _ in started]
            for process, base_url in started:
                wait_ready(base_url, process)
            processes += [start_worker(env, n) for n in range(workers)]
            bases = [base for _, base in started]

            ledger = Ledger()
            done = threading.Event()
            clients = {
                name: Client(name, token, bases) for name, token in tokens.items()
            }
            per_user = [
                requests // users + (i < requests % users) for i in range(users)
            ]
            requester_threads = [
                threading.Thread(
                    target=requester,
                    args=(clients[f"user{i + 1:03d}"], per_user[i], ledger),
                )
                for i in range(users)
            ]
            staff_threads = [
                threading.Thread(target=staff, args=(clients[name], ledger, done))
                for name in clients
                if name.startswith(("approver", "distributor"))
            ]
            began = time.perf_counter()
            for thread in requester_threads + staff_threads:
                thread.start()
            for thread in requester_threads:
                thread.join(timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not all_settled(
                database, len(ledger.submitted)
            ):
                time.sleep(0.3)
            elapsed = time.perf_counter() - began
            done.set()
            for thread in staff_threads:
                thread.join(30)
            stop(processes)

            report = check(database, ledger, mail)
            latencies = sorted(x for c in clients.values() for x in c.latencies)
            calls = len(latencies)
            report.update(
                {
                    "servers": servers,
                    "workers": workers,
                    "users": users,
                    "seconds": round(elapsed, 2),
                    "http_calls": calls,
                    "http_calls_per_second": round(calls / elapsed, 1)
                    if elapsed
                    else 0,
                    "latency_p50_ms": _percentile(latencies, 50),
                    "latency_p95_ms": _percentile(latencies, 95),
                    "http_statuses": dict(
                        sum(
                            (c.statuses for c in clients.values()),
                            collections.Counter(),
                        )
                    ),
                }
            )
            return report
    finally:
        stop(processes)
        database.dispose()
        if not keep:
            drop_database(admin_url, url)


def _percentile(values: list[float], p: int) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, round(p / 100 * (len(values) - 1)))
    return round(values[index] * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=20, help="requesters")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    report = run_scale_out(
        servers=args.servers,
        workers=args.workers,
        users=args.users,
        requests=args.requests,
        admin_url=args.postgres_url,
        timeout=args.timeout,
        keep=args.keep,
    )
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
