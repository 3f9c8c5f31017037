"""Log record formatting for the entrypoints (:func:`llm_cost_ops.cli.console.configure_logging`).

With ``LOG_FORMAT=json`` each record is one JSON object on one line, what Filebeat's
``json.keys_under_root`` (the seeds' log aggregation) and Loki expect::

    {"timestamp": "2025-01-31T12:00:00.123Z", "level": "WARNING", "logger": "sinks.sink",
     "message": "insert failed, retrying in 0.4s: ...", "role": "sink", "operation": "flush", "rows": 500}

``trace_id`` is there while an API request is handled; the ``extra`` fields the code passes
(``operation``, ``topic``, ``partition``, ``offset``, ``rows``...) are top-level keys; an
exception is one string under ``exception``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from llm_cost_ops.trace import current_trace_id

__all__ = ["ContextFilter", "JsonFormatter"]

# Attributes every LogRecord has: anything else on a record came from ``extra``.
# (uvicorn's ``color_message`` is its message again, with terminal colours.)
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_OWN = ("role", "trace_id")


class ContextFilter(logging.Filter):
    """Puts the process's role and the current request's trace id on every record (a handler
    filter, so records of every logger, uvicorn's and Faust's included, get them)."""

    def __init__(self, role: str | None) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "role", None) is None:
            record.role = self.role
        if getattr(record, "trace_id", None) is None:
            record.trace_id = current_trace_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a record: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, then ``role``, ``trace_id`` and the ``extra`` fields when present, and
    ``exception``/``stack`` as strings. Values JSON cannot hold are written as ``str()``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _OWN:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in _OWN and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
