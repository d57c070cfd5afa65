"""Logging set-up for the entry points (CLI, worker, web); never for the library."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}
#: SpiffWorkflow's loggers (spiff.task, spiff.workflow, spiff.data, spiff.dmn)
#: log every task state change at INFO: dozens of lines a request, which
#: drown the product's one line per state change. They speak up from WARNING
#: unless the caller asks for debug output.
SPIFF_LOGGER = "spiff"
_configured_format: str | None = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = (
                    value if isinstance(value, str | int | float | bool) else str(value)
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str | None = None, level: int | None = None) -> None:
    """Send every log record to stderr as text or as JSON lines.

    :param fmt: ``text`` or ``json``; default the ``LOG_FORMAT`` variable.
    :param level: the root level; default ``LOG_LEVEL``, else INFO. At DEBUG,
        SpiffWorkflow's own loggers are let through too.
    """
    global _configured_format
    fmt = fmt or os.environ.get("LOG_FORMAT", "text")
    level = level or getattr(
        logging, os.environ.get("LOG_LEVEL", "INFO").upper(), logging.INFO
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger(SPIFF_LOGGER).setLevel(
        logging.NOTSET if level <= logging.DEBUG else logging.WARNING
    )
    _configured_format = fmt


def formatter_for(fmt: str) -> logging.Formatter:
    """Return the formatter of log format ``fmt`` (``text`` or ``json``)."""
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configured_format() -> str:
    """Return the format :func:`configure_logging` chose, or what it would choose."""
    return _configured_format or os.environ.get("LOG_FORMAT", "text")
