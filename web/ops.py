"""Operational endpoints: /healthz, /readyz and Prometheus metrics at /metrics.

* ``/healthz`` answers 200 while the process serves requests (liveness).
* ``/readyz`` answers 200 only when the database answers and its schema has
  every migration; otherwise 503 with the reason (readiness).
* ``/metrics``: request counts and latencies of this app, and, read from the
  database at each scrape, open tasks per queue, the e-mail outbox backlog,
  open incidents and timers that are due.

Under gunicorn each worker process counts its own requests. With
``PROMETHEUS_MULTIPROC_DIR`` naming a directory shared by the workers,
/metrics adds them up, whichever worker answers: ``provisioning serve`` sets
it up (see :mod:`engine.serve`); under a bare ``gunicorn`` set it to an empty
directory yourself, as docker-compose.yml does.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from engine import migrate
from engine.identity import ROLES
from engine.models import (
    HumanTask,
    Incident,
    IncidentStatus,
    TaskCandidate,
    TaskStatus,
    Timer,
    TimerStatus,
    utcnow,
)
from engine.notifications.models import OutboxMessage, OutboxStatus

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "provisioning_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "provisioning_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPS_PATHS = ("/healthz", "/readyz", "/metrics")


class DatabaseCollector:
    """Gauges read from the database at scrape time, so every process agrees."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        database = self.app.extensions["database"]
        tasks = GaugeMetricFamily(
            "provisioning_open_tasks",
            "Open user tasks, by queue (candidate group; 'none' if it has none).",
            labels=["queue"],
        )
        outbox = GaugeMetricFamily(
            "provisioning_outbox_backlog",
            "E-mails waiting to be sent (pending or being sent).",
        )
        incidents = GaugeMetricFamily(
            "provisioning_open_incidents", "Process instances stopped by an incident."
        )
        timers = GaugeMetricFamily(
            "provisioning_timers_due", "Waiting timers whose due time has passed."
        )
        try:
            with database.read() as session:
                for queue, count in _open_tasks_per_queue(session):
                    tasks.add_metric([queue], count)
                outbox.add_metric([], _count(session, OutboxMessage, _outbox_open()))
                incidents.add_metric(
                    [],
                    _count(session, Incident, Incident.status == IncidentStatus.OPEN),
                )
                timers.add_metric(
                    [],
                    _count(
                        session,
                        Timer,
                        (Timer.status == TimerStatus.WAITING)
                        & (Timer.due_at <= utcnow()),
                    ),
                )
        except SQLAlchemyError as err:
            # A scrape must not fail because the database is down: the request
            # metrics still say something, and /readyz reports the outage.
            logger.warning("Metrics could not read the database: %s", err)
            return
        yield from (tasks, outbox, incidents, timers)


def _outbox_open():
    return OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))


def _count(session, model, condition) -> int:
    return session.scalar(select(func.count()).select_from(model).where(condition))


def _open_tasks_per_queue(session) -> list[tuple[str, int]]:
    grouped = session.execute(
        select(TaskCandidate.name, func.count(func.distinct(HumanTask.id)))
        .join(TaskCandidate, TaskCandidate.task_id == HumanTask.id)
        .where(HumanTask.status == TaskStatus.OPEN, TaskCandidate.kind == "group")
        .group_by(TaskCandidate.name)
    ).all()
    without_queue = session.scalar(
        select(func.count())
        .select_from(HumanTask)
        .where(
            HumanTask.status == TaskStatus.OPEN,
            ~select(TaskCandidate.id)
            .where(TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group")
            .exists(),
        )
    )
    # Every role's queue is reported, empty ones as 0, so that dashboards and
    # alerts see a queue drain to zero instead of the series vanishing.
    counts = dict.fromkeys(ROLES, 0) | dict(grouped)
    counts["none"] = without_queue
    return sorted(counts.items())


def init_app(app: Flask) -> None:
    """Add /healthz, /readyz and /metrics, and time every request."""
    database_registry = CollectorRegistry(auto_describe=False)
    database_registry.register(DatabaseCollector(app))

    @app.before_request
    def _start_timer() -> None:
        g.ops_started = time.perf_counter()

    @app.after_request
    def _count_request(response: Response) -> Response:
        started = g.pop("ops_started", None)
        if started is not None and request.path not in OPS_PATHS:
            route = request.url_rule.rule if request.url_rule else "(unmatched)"
            REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz")
    def healthz():
        """Answer that the process is alive."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        """Answer 200 when the database answers and its schema is current."""
        database = current_app.extensions["database"]
        try:
            with database.read() as session:
                session.execute(text("SELECT 1"))
            pending = migrate.pending_revisions(database)
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            logger.warning("Not ready: database unreachable: %s", reason)
            return jsonify(
                {"status": "unavailable", "reason": f"database unreachable: {reason}"}
            ), 503
        if pending:
            return jsonify(
                {
                    "status": "unavailable",
                    "reason": "database schema is behind; run `provisioning db "
                    f"upgrade` (missing {', '.join(sorted(pending))})",
                }
            ), 503
        return jsonify({"status": "ready"})

    @app.get("/metrics")
    def metrics():
        """Expose the metrics in Prometheus' text format."""
        body = generate_latest(_request_registry()) + generate_latest(database_registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _request_registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
