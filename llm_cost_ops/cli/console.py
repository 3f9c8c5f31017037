"""Terminal output for the CLI: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import logging
import sys

from llm_cost_ops.log_format import ContextFilter, JsonFormatter
from llm_cost_ops.settings import LogFormat, LogLevel


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def configure_logging(level: LogLevel, log_format: LogFormat = "text", role: str | None = None) -> None:
    """Handlers and format are set here, in the entrypoint, and nowhere else.

    Args:
        level: the root level.
        log_format: ``text`` for a terminal, ``json`` for one JSON object a line
            (:class:`llm_cost_ops.log_format.JsonFormatter`).
        role: what this process is (``api``, ``sink``, ``all``, ``worker``, ``cli``...), on every
            JSON record with the request's trace id (:class:`llm_cost_ops.log_format.ContextFilter`).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter(role))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aiokafka logs every retried connection at ERROR; the pipeline reports what matters.
    quiet = max(logging.WARNING, logging.getLogger().level)
    for name in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
