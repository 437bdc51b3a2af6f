"""Log lines that say which request (or job) they belong to, as text or as JSON.

:data:`request_id` is a context variable: the web sets it per request
(:class:`encore.web.ops.RequestContextMiddleware`); it follows the request into the thread
pool (anyio copies the context) and into the jobs' handlers when they run in-process.
:func:`install` adds it to every log record (``%(request_id)s``; ``-`` outside a request)
and sets the format of the root handlers:

- ``text``: ``2026-12-04 17:00:00,123 INFO encore.web [3f2a…]: message``
- ``json``: one object per line, ``{"time", "level", "logger", "request_id", "message"}``
  plus ``exc_info`` when there is a traceback (``ENCORE_LOG_FORMAT=json``, for log
  shippers).
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("encore_request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
_installed = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter(log_format: str = "text") -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def install(log_format: str = "text") -> None:
    """Give every record a ``request_id`` and format the root handlers (idempotent; a later
    call changes the format)."""
    global _installed
    if not _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = request_id.get()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
    root = logging.getLogger()
    if not root.handlers:  # e.g. a web process that uvicorn spawned (--web-workers N)
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(formatter(log_format))
