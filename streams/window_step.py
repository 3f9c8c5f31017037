"""The price agent's window step: a take's priced events into their windows, closed windows
to ``cost-windows`` (see streams/windows.py for the rules)."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faust.streams import _current_event

from llm_cost_ops.metrics import PipelineMetrics
from streams.windows import Position, TakeMessage, Totals, WindowConfig, WindowKey, WindowStore, advance, settle


class TableWindows(WindowStore):
    """Open windows and watermarks in two changelog-backed Faust tables.

    Table keys carry the partition (``"3|[...]"``) so a partition's windows can be found when
    its watermark moves. Each write happens as if during an event of that partition, so its
    changelog lands in the partition the windows belong to and moves with it on a rebalance.
    """

    def __init__(self, windows: Any, marks: Any, events: Sequence[Any]) -> None:
        self._windows = windows
        self._marks = marks
        self._event_of = {event.message.partition: event for event in events}

    def get(self, partition: int, key: WindowKey) -> tuple[Totals, Position] | None:
        value = self._windows.get(_table_key(partition, key))
        if not value:
            return None
        totals, stored_partition, offset = value
        return Totals.load(totals), (int(stored_partition), int(offset))

    def set(self, partition: int, key: WindowKey, totals: Totals, position: Position) -> None:
        value = [totals.dump(), position[0], position[1]]
        self._as_partition(partition, lambda: self._windows.__setitem__(_table_key(partition, key), value))

    def delete(self, partition: int, key: WindowKey) -> None:
        name = _table_key(partition, key)
        if name in self._windows:
            self._as_partition(partition, lambda: self._windows.__delitem__(name))

    def open_keys(self, partition: int) -> list[WindowKey]:
        prefix = f"{partition}|"
        return [WindowKey.parse(name[len(prefix) :]) for name in list(self._windows.keys()) if name.startswith(prefix)]

    def watermark(self, partition: int) -> int | None:
        value = self._marks.get(str(partition))
        return None if value is None else int(value)

    def set_watermark(self, partition: int, watermark_ms: int) -> None:
        self._as_partition(partition, lambda: self._marks.__setitem__(str(partition), watermark_ms))

    def _as_partition(self, partition: int, write: Callable[[], None]) -> None:
        token = _current_event.set(weakref.ref(self._event_of[partition]))
        try:
            write()
        finally:
            _current_event.reset(token)


def _table_key(partition: int, key: WindowKey) -> str:
    return f"{partition}|{key.text()}"


@dataclass(frozen=True)
class WindowDeps:
    config: WindowConfig
    windows: Any
    """The ``windows-open`` Faust table."""
    marks: Any
    """The ``window-marks`` Faust table: each partition's watermark."""
    topic: Any
    """``cost-windows``."""
    metrics: PipelineMetrics


async def window_take(events: Sequence[Any], priced: Sequence[Any], deps: WindowDeps) -> None:
    """Count a take into its windows and produce the windows it closes; the watermarks and the
    deletions are written only once the broker has the closed windows."""
    store = TableWindows(deps.windows, deps.marks, events)
    take = [
        TakeMessage(event.message.partition, event.message.offset, table)
        for event, table in zip(events, priced, strict=True)
    ]
    now = datetime.now(UTC)
    result = advance(take, store, deps.config, int(now.timestamp() * 1000))
    if result.late_requests:
        deps.metrics.late_events.inc(result.late_requests)
    sends = []
    for window in result.closed:
        record = json.dumps(window.record(now), separators=(",", ":")).encode()
        sends.append(await deps.topic.send(key=window.key.organization_id.encode(), value=record))
        deps.metrics.windows_closed.labels(str(window.key.size_s)).inc()
    await asyncio.gather(*sends)
    settle(result, store)
