"""Event-time tumbling windows of cost, tokens and requests, closed by a per-partition watermark.

Faust's windowed tables close windows by wall-clock time, lose windows restored from their
changelog (faust-streaming issue 385) and hand ``on_window_close`` no aggregate, so the windows
live in a plain changelog-backed table instead, and this module decides what they hold:

* each priced event adds to one window per size (``WINDOW__SIZES_S``, 60 s and 3,600 s by
  default) and per dimension: the organization, (organization, project) when it has a project,
  and (organization, model); per currency, so amounts in different currencies never add up;
* a partition's **watermark** is the latest event time it has seen (clamped to now plus
  ``max_skew``: one event from the future must not close everything). Usage is keyed by
  organization, so a partition's watermark orders all of its organizations' windows;
* a window closes once the watermark passes its end plus ``grace_s``: it is returned, to be
  produced to ``cost-windows``, then deleted. An event for a closed window is **late**: it is
  priced and stored as usual, but no window counts it (the ``late`` counter does);
* each window remembers the (partition, offset) of the last message it counted: a message
  replayed after a crash adds nothing twice. A window closed again after a crash (produced,
  not yet deleted) is the same window under the same id, and downstream keeps one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_cost_ops.settings import WindowSettings
from schemas.columns import iso_millis

DIMENSIONS: dict[str, str | None] = {"organization": None, "project": "project_id", "model": "model"}
"""Dimension name -> the column that splits an organization's cost (None: the whole organization)."""


@dataclass(frozen=True, order=True)
class WindowKey:
    size_s: int
    dimension: str
    organization_id: str
    member: str
    """The project or model ('' for the organization dimension)."""
    currency: str
    start_s: int

    @property
    def end_s(self) -> int:
        return self.start_s + self.size_s

    @property
    def series(self) -> str:
        """The window's series: the same key at every start (what a detector follows)."""
        return json.dumps([self.size_s, self.dimension, self.organization_id, self.member, self.currency])

    @property
    def window_id(self) -> str:
        return f"{self.series}@{self.start_s}"

    def text(self) -> str:
        return json.dumps(
            [self.size_s, self.dimension, self.organization_id, self.member, self.currency, self.start_s],
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str) -> WindowKey:
        size, dimension, org, member, currency, start = json.loads(text)
        return cls(int(size), dimension, org, member, currency, int(start))


@dataclass
class Totals:
    cost: Decimal = Decimal(0)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    unpriced_requests: int = 0

    def add(self, other: Totals) -> None:
        self.cost += other.cost
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.requests += other.requests
        self.unpriced_requests += other.unpriced_requests

    def dump(self) -> list[Any]:
        return [
            str(self.cost),
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.requests,
            self.unpriced_requests,
        ]

    @classmethod
    def load(cls, data: Sequence[Any]) -> Totals:
        cost, prompt, completion, total, requests, unpriced = data
        return cls(Decimal(cost), int(prompt), int(completion), int(total), int(requests), int(unpriced))


Position = tuple[int, int]
"""(partition, offset) of a message."""


class WindowStore(Protocol):
    """Open windows and watermarks between takes (the worker: changelog-backed Faust tables)."""

    def get(self, partition: int, key: WindowKey) -> tuple[Totals, Position] | None: ...

    def set(self, partition: int, key: WindowKey, totals: Totals, position: Position) -> None: ...

    def delete(self, partition: int, key: WindowKey) -> None: ...

    def open_keys(self, partition: int) -> list[WindowKey]: ...

    def watermark(self, partition: int) -> int | None:
        """Epoch milliseconds, or None before the partition's first event."""
        ...

    def set_watermark(self, partition: int, watermark_ms: int) -> None: ...


@dataclass
class DictWindows:
    """A WindowStore in dicts: tests and tools."""

    windows: dict[tuple[int, WindowKey], tuple[Totals, Position]] = field(default_factory=dict)
    marks: dict[int, int] = field(default_factory=dict)

    def get(self, partition: int, key: WindowKey) -> tuple[Totals, Position] | None:
        found = self.windows.get((partition, key))
        return None if found is None else (Totals.load(found[0].dump()), found[1])

    def set(self, partition: int, key: WindowKey, totals: Totals, position: Position) -> None:
        self.windows[(partition, key)] = (Totals.load(totals.dump()), position)

    def delete(self, partition: int, key: WindowKey) -> None:
        self.windows.pop((partition, key), None)

    def open_keys(self, partition: int) -> list[WindowKey]:
        return [key for p, key in self.windows if p == partition]

    def watermark(self, partition: int) -> int | None:
        return self.marks.get(partition)

    def set_watermark(self, partition: int, watermark_ms: int) -> None:
        self.marks[partition] = watermark_ms


@dataclass(frozen=True)
class TakeMessage:
    """One consumed message of a take and what pricing made of it."""

    partition: int
    offset: int
    priced: pa.Table | None
    tick_ms: int | None = None
    """An idle tick (streams/idle_tick.py): the event time the partition has reached, no event."""


@dataclass(frozen=True)
class ClosedWindow:
    key: WindowKey
    totals: Totals
    partition: int

    def record(self, closed_at: datetime) -> dict[str, Any]:
        """The JSON record produced to ``cost-windows`` (and stored in ``cost_windows``)."""
        key = self.key
        return {
            "window_id": key.window_id,
            "series": key.series,
            "size_seconds": key.size_s,
            "dimension": key.dimension,
            "organization_id": key.organization_id,
            "project_id": key.member if key.dimension == "project" else None,
            "model": key.member if key.dimension == "model" else None,
            "currency": key.currency,
            "window_start": _iso(key.start_s),
            "window_start_s": key.start_s,
            "window_end": _iso(key.end_s),
            "cost": str(self.totals.cost),
            "prompt_tokens": self.totals.prompt_tokens,
            "completion_tokens": self.totals.completion_tokens,
            "total_tokens": self.totals.total_tokens,
            "requests": self.totals.requests,
            "unpriced_requests": self.totals.unpriced_requests,
            "closed_at": iso_millis(closed_at),
        }


@dataclass
class TakeResult:
    closed: list[ClosedWindow]
    late_requests: int
    watermarks: dict[int, int]
    """The partitions' new watermarks: to store once the closed windows are produced."""


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


_SUMS = ["cost", "prompt_tokens", "completion_tokens", "total_tokens", "unpriced", "requests"]


def contributions(priced: pa.Table, message: np.ndarray, sizes: Iterable[int]) -> list[tuple[int, WindowKey, Totals]]:
    """What each message of a take adds to each window: (message, key, totals), in message order.

    One group-by over the events at the finest grain (message, organization, project, model,
    currency, minute); every window size and dimension is then summed from that small table."""
    if priced.num_rows == 0:
        return []
    minutes = np.floor_divide(priced.column("timestamp").cast(pa.int64()).to_numpy(), 60_000) * 60
    cost = priced.column("total_cost")
    fine = (
        pa.table(
            {
                "message": pa.array(message.astype(np.int64)),
                "organization_id": priced.column("organization_id").cast(pa.string()),
                "project_id": priced.column("project_id").cast(pa.string()),
                "model": priced.column("model").cast(pa.string()),
                "currency": pc.fill_null(priced.column("currency").cast(pa.string()), "USD"),
                "start": pa.array(minutes),
                "cost": cost,
                "prompt_tokens": priced.column("prompt_tokens"),
                "completion_tokens": priced.column("completion_tokens"),
                "total_tokens": priced.column("total_tokens"),
                "unpriced": pc.cast(pc.is_null(cost), pa.int64()),
                "requests": pa.array(np.ones(priced.num_rows, dtype=np.int64)),
            }
        )
        .group_by(["message", "organization_id", "project_id", "model", "currency", "start"], use_threads=False)
        .aggregate([(name, "sum") for name in _SUMS])
        .rename_columns(["message", "organization_id", "project_id", "model", "currency", "start", *_SUMS])
    )
    out: list[tuple[int, WindowKey, Totals]] = []
    for size in sizes:
        sized = fine.set_column(
            fine.schema.get_field_index("start"),
            "start",
            pa.array(np.floor_divide(fine.column("start").to_numpy(), size) * size),
        )
        for dimension, column in DIMENSIONS.items():
            if column is None:
                table = sized.append_column("member", pa.array([""] * sized.num_rows, pa.string()))
            else:
                table = sized.filter(pc.is_valid(sized.column(column)))
                if table.num_rows == 0:
                    continue
                table = table.append_column("member", table.column(column))
            summed = table.group_by(["message", "organization_id", "member", "currency", "start"], use_threads=False)
            for row in summed.aggregate([(name, "sum") for name in _SUMS]).to_pylist():
                key = WindowKey(size, dimension, row["organization_id"], row["member"], row["currency"], row["start"])
                totals = Totals(
                    cost=row["cost_sum"] or Decimal(0),
                    prompt_tokens=int(row["prompt_tokens_sum"] or 0),
                    completion_tokens=int(row["completion_tokens_sum"] or 0),
                    total_tokens=int(row["total_tokens_sum"] or 0),
                    requests=int(row["requests_sum"]),
                    unpriced_requests=int(row["unpriced_sum"] or 0),
                )
                out.append((int(row["message"]), key, totals))
    out.sort(key=lambda item: item[0])
    return out


def advance(messages: Sequence[TakeMessage], store: WindowStore, config: WindowSettings, now_ms: int) -> TakeResult:
    """Add a take's priced events to their windows and find the windows it closes.

    The caller produces ``closed`` and then, once the broker has them, calls :func:`settle`
    (watermarks stored, closed windows deleted): a crash in between closes them again."""
    tables, numbers = [], []
    for number, message in enumerate(messages):
        if message.priced is not None and message.priced.num_rows:
            tables.append(message.priced)
            numbers.append(np.full(message.priced.num_rows, number, dtype=np.int64))
    ticks: dict[int, int] = {}
    for message in messages:
        if message.tick_ms is not None:
            ticks[message.partition] = max(ticks.get(message.partition, message.tick_ms), message.tick_ms)
    if not tables and not ticks:
        return TakeResult([], 0, {})
    priced = pa.concat_tables(tables) if tables else None
    message_of_row = np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.int64)
    before = {m.partition: store.watermark(m.partition) for m in messages}
    grace = config.grace_s
    pending: dict[tuple[int, WindowKey], tuple[Totals, Position]] = {}
    late = 0
    added = [] if priced is None else contributions(priced, message_of_row, config.sizes_s)
    for number, key, totals in added:
        message = messages[number]
        partition, position = message.partition, (message.partition, message.offset)
        mark = before[partition]
        if mark is not None and (key.end_s + grace) * 1000 <= mark:
            if key.size_s == min(config.sizes_s) and key.dimension == "organization":
                late += totals.requests  # once per event, not once per size and dimension
            continue
        slot = (partition, key)
        if slot not in pending:
            stored = store.get(partition, key)
            pending[slot] = stored if stored is not None else (Totals(), (partition, -1))
        current, last = pending[slot]
        if last[0] == partition and message.offset <= last[1]:
            continue  # replayed after a crash: counted already
        current.add(totals)
        pending[slot] = (current, position)
    for (partition, key), (totals, position) in pending.items():
        store.set(partition, key, totals, position)
    ceiling = now_ms + config.max_skew_s * 1000
    latest = {} if priced is None else _latest_per_partition(priced, message_of_row, messages)
    for partition, tick in ticks.items():
        latest[partition] = max(latest.get(partition, tick), tick)
    after: dict[int, int] = {}
    closed: list[ClosedWindow] = []
    for partition, newest in latest.items():
        previous = before[partition]
        mark = min(newest, ceiling) if previous is None else max(previous, min(newest, ceiling))
        if previous is not None and mark <= previous:
            continue
        after[partition] = mark
        for key in store.open_keys(partition):
            if (key.end_s + grace) * 1000 <= mark:
                found = store.get(partition, key)
                if found is not None:
                    closed.append(ClosedWindow(key, found[0], partition))
    closed.sort(key=lambda window: (window.key.start_s, window.key))
    return TakeResult(closed, late, after)


def settle(result: TakeResult, store: WindowStore) -> None:
    """Once the closed windows are durable: store the watermarks, delete the closed windows."""
    for partition, mark in result.watermarks.items():
        store.set_watermark(partition, mark)
    for window in result.closed:
        store.delete(window.partition, window.key)


def _latest_per_partition(
    priced: pa.Table, message_of_row: np.ndarray, messages: Sequence[TakeMessage]
) -> dict[int, int]:
    timestamps = priced.column("timestamp").cast(pa.int64()).to_numpy()
    partitions = np.array([messages[n].partition for n in range(len(messages))], dtype=np.int64)[message_of_row]
    latest: dict[int, int] = {}
    for partition in np.unique(partitions).tolist():
        latest[int(partition)] = int(timestamps[partitions == partition].max())
    return latest
