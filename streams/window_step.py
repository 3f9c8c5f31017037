"""The price agent's window step: a take's priced events into their windows, closed windows
to ``cost-windows`` (see streams/windows.py for the rules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import WindowSettings
from streams.table_writes import during
from streams.windows import Position, TakeMessage, Totals, WindowKey, WindowStore, advance, settle


class TableWindows(WindowStore):
    """Open windows and watermarks in one changelog-backed Faust table, written once per take.

    Keys: ``"<partition>|b|<size>|<start>"`` holds every open window of that partition, size
    and start (series -> [totals, partition, offset]): a take writes one record per bucket it
    touched, not one per window (on Tansu each record is its own batch, see settings.py).
    ``"<partition>|mark"`` holds the partition's watermark. Every write of a partition happens
    as if during an event of that partition, so it lands in that changelog partition, in order:
    the buckets, then the watermark. A watermark that survived a crash therefore implies the
    buckets written before it did too (a closed window is never restored with stale totals).
    """

    def __init__(self, table: Any, events: Sequence[Any]) -> None:
        self._table = table
        self._event_of = {event.message.partition: event for event in events}
        self._buckets: dict[str, dict[str, list[Any]]] = {}
        self._dirty: dict[str, int] = {}
        """Bucket name -> partition, of the buckets changed in this take."""
        self._marks: dict[int, int] = {}

    def get(self, partition: int, key: WindowKey) -> tuple[Totals, Position] | None:
        value = self._bucket(_bucket_name(partition, key)).get(_series(key))
        if value is None:
            return None
        totals, stored_partition, offset = value
        return Totals.load(totals), (int(stored_partition), int(offset))

    def set(self, partition: int, key: WindowKey, totals: Totals, position: Position) -> None:
        name = _bucket_name(partition, key)
        self._bucket(name)[_series(key)] = [totals.dump(), position[0], position[1]]
        self._dirty[name] = partition

    def delete(self, partition: int, key: WindowKey) -> None:
        name = _bucket_name(partition, key)
        if self._bucket(name).pop(_series(key), None) is not None:
            self._dirty[name] = partition

    def open_keys(self, partition: int) -> list[WindowKey]:
        prefix = f"{partition}|b|"
        names = {name for name in list(self._table.keys()) if name.startswith(prefix)}
        names.update(name for name in self._buckets if name.startswith(prefix))
        keys = []
        for name in names:
            size, start = (int(part) for part in name[len(prefix) :].split("|"))
            for series in self._bucket(name):
                dimension, org, member, currency = json.loads(series)
                keys.append(WindowKey(size, dimension, org, member, currency, start))
        return keys

    def watermark(self, partition: int) -> int | None:
        if partition in self._marks:
            return self._marks[partition]
        value = self._table.get(f"{partition}|mark")
        return None if value is None else int(value)

    def set_watermark(self, partition: int, watermark_ms: int) -> None:
        self._marks[partition] = watermark_ms

    def flush(self) -> None:
        """Write the changed buckets (an emptied one is deleted), then the watermarks."""
        for name, partition in self._dirty.items():
            bucket = self._buckets[name]
            if bucket or name in self._table:
                self._write(partition, name, bucket or None)
        for partition, mark in self._marks.items():
            self._write(partition, f"{partition}|mark", mark)
        self._dirty.clear()
        self._marks.clear()

    def _bucket(self, name: str) -> dict[str, list[Any]]:
        if name not in self._buckets:
            self._buckets[name] = dict(self._table.get(name) or {})
        return self._buckets[name]

    def _write(self, partition: int, name: str, value: object) -> None:
        """``table[name] = value`` (``None``: delete) as if during an event of ``partition``."""
        with during(self._event_of[partition]):
            if value is None:
                del self._table[name]
            else:
                self._table[name] = value


def _bucket_name(partition: int, key: WindowKey) -> str:
    return f"{partition}|b|{key.size_s}|{key.start_s}"


def _series(key: WindowKey) -> str:
    return json.dumps([key.dimension, key.organization_id, key.member, key.currency], separators=(",", ":"))


@dataclass(frozen=True)
class WindowDeps:
    config: WindowSettings
    windows: Any
    """The ``windows-open`` Faust table (see TableWindows)."""
    topic: Any
    """``cost-windows``."""
    metrics: PipelineMetrics


async def window_take(
    events: Sequence[Any], priced: Sequence[Any], ticks: Sequence[int | None], deps: WindowDeps
) -> None:
    """Count a take into its windows and produce the windows it closes; the watermarks and the
    deletions are written only once the broker has the closed windows. ``priced`` and ``ticks``
    are per event: its priced table (None for a tick), and the event time a tick carries."""
    store = TableWindows(deps.windows, events)
    take = [
        TakeMessage(event.message.partition, event.message.offset, table, tick)
        for event, table, tick in zip(events, priced, ticks, strict=True)
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
    store.flush()
