#!/usr/bin/env python3
"""Load benchmark over HTTP: provisioning requests completed per second.

N concurrent clients each run whole request lifecycles through the REST API
of a real gunicorn server on 127.0.0.1: submit a hardware token request,
then take its two approval steps and its distribution step (each as listing
the inbox and completing the task), as the people of the client's own
security domain. Every client works in its own domain, so the clients share
the server and the database but never a request.

Two set-ups are measured in the same run:

* SQLite, one gunicorn worker process (the laptop set-up);
* PostgreSQL, several gunicorn worker processes (``--pg-workers``).

Each prints lifecycles per second, HTTP calls per second and call latency
percentiles, next to the engine-layer rate of bench/engine_bench.py measured
on the same database kind in the same run (no HTTP, one process): the
difference is what the web layer, the API and the concurrency cost.

    python bench/load.py --clients 8 --lifecycles 10 --pg-workers 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from engine_bench import run_engine_lifecycles  # noqa: E402
from scale_out import (  # noqa: E402
    DEFAULT_POSTGRES,
    Client,
    MailCatcher,
    _percentile,
    app_environment,
    create_database,
    drop_database,
    start_server,
    start_worker,
    stop,
    wait_ready,
)

from engine import api_tokens, deployments, migrate  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.identity import (  # noqa: E402
    REQUEST_APPROVER,
    TOKEN_ADMINISTRATOR,
    TOKEN_DISTRIBUTOR,
    actor_for,
)
from engine.provisioning import directory, inventory  # noqa: E402


def set_up(database: Database, clients: int, lifecycles: int) -> list[dict[str, str]]:
    """Create one security domain per client with its four people; return tokens."""
    migrate.upgrade(database)
    expiry = (date.today() + timedelta(days=3 * 365)).isoformat()
    teams: list[dict[str, str]] = []
    with database.write() as session:
        directory.create_domain(session, "acme", actor="system")
        directory.create_user(
            session,
            username="stock",
            display_name="Stock",
            email="stock@example.org",
            domain_path="acme",
            roles=[(TOKEN_ADMINISTRATOR, "acme")],
            actor="system",
        )
        inventory.create_token_model(
            session, code="SID700", name="SID700 key fob", token_class="hardware"
        )
        deployments.deploy(
            session,
            deployments.read_paths([ROOT / "bpmn"]),
            deployed_by="bench",
            source="load benchmark",
        )
        for c in range(clients):
            domain = f"acme/c{c:02d}"
            directory.create_domain(session, domain, actor="system")
            team = {"domain": domain}
            for part, role in (
                ("requester", None),
                ("approver1", REQUEST_APPROVER),
                ("approver2", REQUEST_APPROVER),
                ("distributor", TOKEN_DISTRIBUTOR),
            ):
                username = f"c{c:02d}-{part}"
                directory.create_user(
                    session,
                    username=username,
                    display_name=username,
                    email=f"{username}@example.org",
                    domain_path=domain,
                    roles=[(role, domain)] if role else [],
                    actor="system",
                )
                team[part] = api_tokens.create_token(
                    session, username, name="bench", actor="system"
                )[1]
            rows = "".join(
                f"L{c:02d}-{i:05d},SID700,{expiry}\n" for i in range(lifecycles + 2)
            )
            inventory.import_tokens_csv(
                session,
                actor_for(session, "stock"),
                "serial,model,expiry\n" + rows,
                domain_path=domain,
            )
            teams.append(team)
    return teams


def lifecycle(team: dict[str, Client], number: int, prefix: str) -> None:
    """Run one request from submission to distribution; raise if a step fails."""
    status, body = team["requester"].call(
        "POST",
        "/api/v1/requests",
        {
            "request_type": "new_token",
            "form": {
                "token_class": "hardware",
                "token_model": "SID700",
                "shipping_address": "1 Main Street",
                "justification": f"Load benchmark request {number}",
            },
        },
    )
    _expect(status, 201, body)
    for person, data in (
        ("approver1", {"decision": "approve"}),
        ("approver2", {"decision": "approve"}),
        ("distributor", {"serial_number": f"{prefix}-{number:05d}", "carrier": "dhl"}),
    ):
        status, inbox = team[person].call("GET", "/api/v1/tasks")
        _expect(status, 200, inbox)
        task = inbox["items"][0]
        status, body = team[person].call(
            "POST", f"/api/v1/tasks/{task['id']}/complete", {"data": data}
        )
        _expect(status, 200, body)


def _expect(status: int, wanted: int, body) -> None:
    if status != wanted:
        raise RuntimeError(f"expected HTTP {wanted}, got {status}: {body}")


def measure(url: str, *, clients: int, lifecycles: int, web_workers: int) -> dict:
    """Serve ``url`` with gunicorn and drive it; return the figures."""
    database = Database(url)
    teams = set_up(database, clients, lifecycles)
    database.dispose()
    processes = []
    with MailCatcher() as mail, tempfile.TemporaryDirectory() as instance:
        env = app_environment(url, mail.controller.port, Path(instance))
        try:
            process, base = start_server(env, threads=4, workers=web_workers)
            processes.append(process)
            wait_ready(base, process)
            processes.append(start_worker(env, 0))
            people = [
                {
                    part: Client(f"{part}-{c}", token, [base])
                    for part, token in team.items()
                    if part != "domain"
                }
                for c, team in enumerate(teams)
            ]
            failures: list[str] = []

            def run(c: int) -> None:
                try:
                    for n in range(lifecycles):
                        lifecycle(people[c], n, f"L{c:02d}")
                except Exception as err:  # noqa: BLE001 - reported below
                    failures.append(str(err))

            threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        finally:
            stop(processes)

    latencies = sorted(x for team in people for c in team.values() for x in c.latencies)
    return {
        "clients": clients,
        "web_workers": web_workers,
        "lifecycles": clients * lifecycles,
        "seconds": round(elapsed, 2),
        "lifecycles_per_second": round(clients * lifecycles / elapsed, 2),
        "http_calls_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p90": _percentile(latencies, 90),
            "p99": _percentile(latencies, 99),
            "max": _percentile(latencies, 100),
        },
        "failures": failures[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--lifecycles", type=int, default=10, help="per client")
    parser.add_argument("--pg-workers", type=int, default=4)
    parser.add_argument("--engine-lifecycles", type=int, default=50)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite_http"] = measure(
            f"sqlite:///{tmp}/load.sqlite3",
            clients=args.clients,
            lifecycles=args.lifecycles,
            web_workers=1,
        )
    results["sqlite_engine"] = run_engine_lifecycles(args.engine_lifecycles)

    if not args.skip_postgres:
        for name, run in (
            (
                "postgres_http",
                lambda url: measure(
                    url,
                    clients=args.clients,
                    lifecycles=args.lifecycles,
                    web_workers=args.pg_workers,
                ),
            ),
            (
                "postgres_engine",
                lambda url: run_engine_lifecycles(args.engine_lifecycles, url),
            ),
        ):
            url = create_database(args.postgres_url)
            try:
                results[name] = run(url)
            finally:
                drop_database(args.postgres_url, url)

    print(json.dumps(results, indent=2))
    for kind in ("sqlite", "postgres"):
        http, engine = results.get(f"{kind}_http"), results.get(f"{kind}_engine")
        if http and engine:
            print(
                f"{kind:8}: {http['lifecycles_per_second']:7.2f} requests/s over HTTP "
                f"({http['clients']} clients, {http['web_workers']} web workers; "
                f"p50 {http['latency_ms']['p50']} ms, p99 {http['latency_ms']['p99']} "
                f"ms per call) vs {engine['per_second']:7.2f}/s in the engine alone"
            )
    failed = [r for r in results.values() if r.get("failures")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
