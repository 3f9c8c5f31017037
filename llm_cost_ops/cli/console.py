"""Terminal output for the CLI: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import logging
import sys

from llm_cost_ops.settings import LogLevel


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def configure_logging(level: LogLevel) -> None:
    """Handlers and format are set here, in the entrypoint, and nowhere else."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # aiokafka logs every retried connection at ERROR; the pipeline reports what matters.
    quiet = max(logging.WARNING, logging.getLogger().level)
    for name in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
