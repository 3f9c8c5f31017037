"""Event-time tumbling windows (streams/windows.py) as pure logic over a dict store."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa

from llm_cost_ops.settings import WindowSettings
from streams.windows import DictWindows, TakeMessage, Totals, WindowKey, advance, settle

CONFIG = WindowSettings(sizes_s=(60, 3600), grace_s=60, max_skew_s=300)
NOW_MS = 10_000_000_000  # far after the events: only the future-skew test is near it


def priced(*rows: dict[str, Any]) -> pa.Table:
    """Priced rows with the columns the windows read (defaults: org-a, model m, no project, $1)."""
    full = [
        {
            "organization_id": "org-a",
            "project_id": None,
            "model": "m",
            "currency": "USD",
            "total_cost": Decimal("1"),
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            **row,
        }
        for row in rows
    ]
    for row in full:
        row["timestamp"] = row.pop("at") * 1000
    schema = pa.schema(
        [
            ("organization_id", pa.string()),
            ("project_id", pa.string()),
            ("model", pa.string()),
            ("currency", pa.string()),
            ("total_cost", pa.decimal128(38, 10)),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("total_tokens", pa.int64()),
            ("timestamp", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(full, schema=schema)
    return table.set_column(8, "timestamp", table.column("timestamp").cast(pa.timestamp("ms", tz="UTC")))


def take(store: DictWindows, *messages: TakeMessage) -> Any:
    result = advance(list(messages), store, CONFIG, NOW_MS)
    settle(result, store)
    return result


def test_each_event_adds_to_one_window_per_size_and_dimension() -> None:
    store = DictWindows()
    table = priced(
        {"at": 10, "project_id": "p1", "total_cost": Decimal("0.0000000001")},
        {"at": 50, "model": "n", "total_cost": Decimal("2.5")},
        {"at": 70, "total_cost": None, "currency": None},  # unpriced, next minute
    )
    take(store, TakeMessage(0, 0, table))
    totals = {(k.size_s, k.dimension, k.member, k.start_s): v[0] for (_, k), v in store.windows.items()}
    assert totals[(60, "organization", "", 0)] == Totals(Decimal("2.5000000001"), 20, 10, 30, 2, 0)
    assert totals[(60, "organization", "", 60)] == Totals(Decimal(0), 10, 5, 15, 1, 1)
    assert totals[(3600, "organization", "", 0)].requests == 3
    assert totals[(3600, "organization", "", 0)].cost == Decimal("2.5000000001")
    assert totals[(60, "project", "p1", 0)].requests == 1  # events without a project: no project window
    assert not any(d == "project" and s == 60 and start == 60 for s, d, _, start in totals)
    assert totals[(60, "model", "n", 0)].cost == Decimal("2.5")
    assert totals[(3600, "model", "m", 0)].requests == 2


def test_windows_close_once_the_watermark_passes_end_plus_grace() -> None:
    store = DictWindows()
    assert take(store, TakeMessage(0, 0, priced({"at": 10}, {"at": 59}))).closed == []
    assert take(store, TakeMessage(0, 1, priced({"at": 119}))).closed == []  # 60 + 60 grace > 119
    result = take(store, TakeMessage(0, 2, priced({"at": 120})))
    closed = {(w.key.size_s, w.key.dimension, w.key.start_s): w.totals for w in result.closed}
    assert set(closed) == {(60, "organization", 0), (60, "model", 0)}
    assert closed[(60, "organization", 0)].requests == 2 and closed[(60, "organization", 0)].cost == Decimal(2)
    assert not any(k.start_s == 0 and k.size_s == 60 for _, k in store.windows)  # deleted
    record = result.closed[0].record(__import__("datetime").datetime(2025, 1, 1))
    assert record["window_start"] == "1970-01-01T00:00:00Z" and record["window_end"] == "1970-01-01T00:01:00Z"
    assert record["cost"] == "2.0000000000" and record["window_id"].endswith("@0")


def test_a_late_event_is_counted_as_late_and_never_reopens_its_window() -> None:
    store = DictWindows()
    take(store, TakeMessage(0, 0, priced({"at": 10})))
    take(store, TakeMessage(0, 1, priced({"at": 200})))
    result = take(store, TakeMessage(0, 2, priced({"at": 30}, {"at": 190})))
    assert result.late_requests == 1
    assert not any(k.start_s == 0 and k.size_s == 60 for _, k in store.windows)
    hour = store.windows[(0, WindowKey(3600, "organization", "org-a", "", "USD", 0))][0]
    assert hour.requests == 4  # the hour is still open: nothing is late for it


def test_a_replayed_message_adds_nothing_and_partitions_keep_their_own_watermarks() -> None:
    store = DictWindows()
    first = TakeMessage(0, 5, priced({"at": 10}))
    take(store, first)
    take(store, first)  # a replay after a crash before the offset commit
    take(store, TakeMessage(1, 5, priced({"at": 10, "organization_id": "org-b"})))  # same offset, other partition
    key = WindowKey(60, "organization", "org-a", "", "USD", 0)
    assert store.windows[(0, key)][0].requests == 1
    assert store.windows[(1, WindowKey(60, "organization", "org-b", "", "USD", 0))][0].requests == 1
    take(store, TakeMessage(1, 6, priced({"at": 500, "organization_id": "org-b"})))
    assert (0, key) in store.windows  # partition 1's watermark closes nothing of partition 0
    assert store.marks == {0: 10_000, 1: 500_000}


def test_a_crash_before_settling_closes_the_same_windows_again() -> None:
    store = DictWindows()
    take(store, TakeMessage(0, 0, priced({"at": 10})))
    crashed = advance([TakeMessage(0, 1, priced({"at": 300}))], store, CONFIG, NOW_MS)  # produced, not settled
    again = advance([TakeMessage(0, 1, priced({"at": 300}))], store, CONFIG, NOW_MS)  # the replay
    assert [(w.key, w.totals) for w in again.closed] == [(w.key, w.totals) for w in crashed.closed]
    assert {w.key.window_id for w in again.closed} == {w.key.window_id for w in crashed.closed}


def test_a_timestamp_from_the_future_cannot_close_everything() -> None:
    store = DictWindows()
    now_ms = 3_600_000
    advance([TakeMessage(0, 0, priced({"at": 3500}))], store, CONFIG, now_ms)
    result = advance([TakeMessage(0, 1, priced({"at": 10 * 86_400}))], store, CONFIG, now_ms)
    assert result.watermarks == {0: now_ms + 300_000}


def test_currencies_are_separate_windows() -> None:
    store = DictWindows()
    take(store, TakeMessage(0, 0, priced({"at": 1, "currency": "EUR"}, {"at": 2})))
    currencies = {k.currency for _, k in store.windows if k.dimension == "organization" and k.size_s == 60}
    assert currencies == {"EUR", "USD"}
