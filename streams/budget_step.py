"""The price agent's budget step: a take's priced events into the ``budget-spend`` table, and
a ``budget.threshold`` alert for each threshold reached (see streams/budgets.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from llm_cost_ops.metrics import PipelineMetrics
from streams.alerting import send_alert
from streams.budgets import (
    PERIODS,
    Bucket,
    BucketKey,
    BudgetBook,
    Counted,
    budget_alert,
    count_take,
    crossings,
    mark_reached,
    oldest_kept,
)
from streams.table_writes import during


class TableSpend:
    """The ``budget-spend`` Faust table: ``BucketKey.text(partition)`` -> ``Bucket.dump()``, and
    ``"<partition>|newest"`` -> the start of the newest day seen in the partition. Each key is
    written as if during an event of its partition (its changelog partition)."""

    def __init__(self, table: Any, events: Sequence[Any]) -> None:
        self._table = table
        self._event_of = {event.message.partition: event for event in events}

    def get(self, partition: int, bucket: BucketKey) -> Bucket | None:
        value = self._table.get(bucket.text(partition))
        return None if value is None else Bucket.load(value)

    def newest(self) -> dict[int, int]:
        marks = {p: self._table.get(_newest_key(p)) for p in self._event_of}
        return {p: int(mark) for p, mark in marks.items() if mark is not None}

    def write(self, counted: Counted, before: dict[int, int], retention_days: int) -> None:
        """The take's buckets, then, for a partition whose newest day moved on, the deletion of
        the periods no longer kept and the new day."""
        for (partition, bucket), value in counted.buckets.items():
            with during(self._event_of[partition]):
                self._table[bucket.text(partition)] = value.dump()
        for partition, newest in counted.newest_s.items():
            if newest == before.get(partition):
                continue
            with during(self._event_of[partition]):
                for text in self._expired(partition, newest, retention_days):
                    del self._table[text]
                self._table[_newest_key(partition)] = newest

    def _expired(self, partition: int, newest: int, retention_days: int) -> list[str]:
        kept = {period: oldest_kept(period, newest, retention_days) for period in PERIODS}
        expired = []
        for text in list(self._table.keys()):
            if not text.startswith(f"{partition}|") or text == _newest_key(partition):
                continue
            _, bucket = BucketKey.parse(text)
            if bucket.start_s < kept[bucket.period]:
                expired.append(text)
        return expired


def _newest_key(partition: int) -> str:
    return f"{partition}|newest"


@dataclass
class KnownBudgets:
    """The budgets a worker enforces; the control feed replaces the book as budgets change."""

    book: BudgetBook = field(default_factory=BudgetBook)


@dataclass(frozen=True)
class BudgetDeps:
    spend: Any
    """The ``budget-spend`` Faust table (see TableSpend)."""
    budgets: KnownBudgets
    alerts: Any
    """The ``alerts`` topic."""
    metrics: PipelineMetrics
    retention_days: int


async def budget_take(events: Sequence[Any], priced: Sequence[pa.Table | None], deps: BudgetDeps) -> None:
    """Count a take into its spends; the alerts of the thresholds it reaches are produced and
    acknowledged before the spends (which record them) are written: a crash in between raises
    the same alerts (same ids) again, never none."""
    events, priced = _once_each(events, priced)
    tables = [(number, table) for number, table in enumerate(priced) if table is not None and table.num_rows]
    if not tables:
        return
    message = np.concatenate([np.full(table.num_rows, number, dtype=np.int64) for number, table in tables])
    store = TableSpend(deps.spend, events)
    before = store.newest()
    positions = [(event.message.partition, event.message.offset) for event in events]
    priced_rows = pa.concat_tables([table for _, table in tables])
    now = datetime.now(UTC)
    counted = count_take(positions, priced_rows, message, store, before, deps.retention_days, int(now.timestamp()))
    if counted.skipped:
        deps.metrics.budget_late.inc(counted.skipped)
    found = crossings(counted, deps.budgets.book)
    sends = []
    for crossing in found:
        sends.append(await send_alert(deps.alerts, budget_alert(crossing, now), deps.metrics))
    await asyncio.gather(*sends)
    mark_reached(counted, found)
    store.write(counted, before, deps.retention_days)


def _once_each(events: Sequence[Any], priced: Sequence[pa.Table | None]) -> tuple[list[Any], list[pa.Table | None]]:
    """The take without a message delivered twice in it (a seek back during a rebalance can
    hand Faust the same offsets again), in offset order per partition."""
    seen: dict[tuple[int, int], int] = {}
    for number, event in enumerate(events):
        seen.setdefault((event.message.partition, event.message.offset), number)
    kept = sorted(seen.items())
    return [events[number] for _, number in kept], [priced[number] for _, number in kept]
