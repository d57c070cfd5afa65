"""Run the web console under gunicorn from the CLI.

The engine never imports the web layer: gunicorn is handed the console's
application factory by name and imports it in each worker process.

Two things gunicorn does not do by itself are set up here:

* Its own error and access logs follow the format the CLI chose (see
  :func:`engine.logs.configure_logging`): with ``--log-format json`` every
  line of the server is a JSON object, access lines with the method, path,
  status and duration as fields.
* Each worker counts its own requests for /metrics. prometheus_client adds
  the workers' counts up only through files in ``PROMETHEUS_MULTIPROC_DIR``,
  and it reads that variable once, when a worker first imports it. So the
  directory is prepared before any worker is forked: the one the variable
  names, emptied of the files of an earlier run, or else a fresh temporary
  directory, removed again when the server stops. A worker that exits is
  marked dead, so that its live gauges vanish while its counts stay.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.util import import_app

from .logs import configured_format, formatter_for

logger = logging.getLogger(__name__)

APP_URI = "web:create_app()"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class JsonLogger(Logger):
    """Gunicorn's error and access logs as JSON lines, like the application's."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter_for("json"))

    def access(self, resp, req, environ, request_time) -> None:
        if not getattr(self, "access_log_enabled", True):
            return
        atoms = self.atoms(resp, req, environ, request_time)
        self.access_log.info(
            "%s %s %s",
            atoms["m"],
            atoms["U"],
            atoms["s"],
            extra={
                "remote_addr": atoms["h"],
                "method": atoms["m"],
                "path": atoms["U"],
                "query": atoms["q"],
                "status": int(atoms["s"]),
                "bytes": atoms["B"] or 0,
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "user_agent": atoms["a"],
                "referer": atoms["f"],
                "worker_pid": os.getpid(),
            },
        )


class _Server(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return import_app(APP_URI)


def prepare_metrics_dir(
    environ: MutableMapping[str, str] = os.environ,
) -> tuple[Path, bool]:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` ready for a new server.

    :returns: the directory, and whether it was created here (and is to be
        removed when the server stops).
    """
    given = environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        # Counts of a previous run would be added to this one's.
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="provisioning-metrics-"))
    environ[MULTIPROC_ENV] = str(path)
    return path, True


def _mark_worker_dead(server, worker) -> None:
    # Imported here, in the arbiter, only once the variable is set: workers
    # forked from a process that imported prometheus_client earlier would
    # keep counting in memory.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(*, host: str, port: int, workers: int) -> None:
    """Serve the console with gunicorn until it is stopped."""
    metrics_dir, created = prepare_metrics_dir()
    logger.info(
        "Request metrics of the gunicorn workers add up in %s",
        metrics_dir,
        extra={"metrics_dir": str(metrics_dir)},
    )
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": 4,
        "accesslog": "-",
        "timeout": 60,
        "loglevel": "debug"
        if logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        else "info",
        "child_exit": _mark_worker_dead,
    }
    if configured_format() == "json":
        options["logger_class"] = JsonLogger
    arbiter_pid = os.getpid()
    try:
        _Server(options).run()
    finally:
        # Workers leave run() too, by SystemExit; only the arbiter cleans up.
        if created and os.getpid() == arbiter_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
