"""Priced tables -> ``usage_costs`` rows and the in-batch dedupe (sinks/rows.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from schemas.columns import millis, table_from_events
from schemas.priced import PRICED_SCHEMA, decode_priced, encode_priced
from schemas.usage import UsageEvent
from sinks.migrations import MIGRATIONS
from sinks.records import ALERT_SCHEMA, WINDOW_SCHEMA
from sinks.rows import USAGE_COSTS_COLUMNS, dedupe
from streams.pricing import PriceCatalog

EventFactory = Callable[..., UsageEvent]
PRICED_AT = datetime(2025, 1, 15, 10, 0, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def sink_rows(catalog: PriceCatalog, events: list[UsageEvent]) -> list[dict[str, Any]]:
    """The rows the sink inserts for ``events``: priced, sent as Arrow, read back, in table order."""
    table = decode_priced(encode_priced(catalog.price(table_from_events(events), millis(PRICED_AT))))
    rows: list[dict[str, Any]] = table.select(list(USAGE_COSTS_COLUMNS)).to_pylist()
    return rows


def marked(pairs: list[tuple[str, str]]) -> pa.Table:
    """A table keyed like a priced one: (organization_id, event_id) per row, ``prompt_tokens`` its position."""
    return pa.table(
        {
            "organization_id": pa.array([org for org, _ in pairs]).dictionary_encode(),
            "event_id": pa.array([event for _, event in pairs]),
            "prompt_tokens": pa.array(range(len(pairs)), pa.int64()),
        }
    )


def test_columns_are_unique() -> None:
    assert len(USAGE_COSTS_COLUMNS) == len(set(USAGE_COSTS_COLUMNS)) == 35


def test_columns_are_the_priced_columns() -> None:
    """The sink inserts priced tables by column name: every table column, nothing else."""
    assert set(USAGE_COSTS_COLUMNS) == set(PRICED_SCHEMA.names)


def declared_columns(table: str) -> list[str]:
    """The columns of the latest CREATE of ``table`` in the migrations, in order."""
    statements = [s for m in MIGRATIONS for s in m.statements if re.search(rf"\.{table}(_next)? \(", s)]
    body = statements[-1][statements[-1].index("(") + 1 : statements[-1].index("ENGINE")]
    return re.findall(r"^\s*(\w+) ", body, flags=re.MULTILINE)


def test_columns_are_the_table_columns_in_order() -> None:
    # written_at and deleted (a tombstone's flag): their defaults
    assert declared_columns("usage_costs") == [*USAGE_COSTS_COLUMNS, "written_at", "deleted"]
    assert declared_columns("cost_windows") == WINDOW_SCHEMA.names
    assert declared_columns("alerts") == ALERT_SCHEMA.names


def test_one_value_per_column(catalog: PriceCatalog, usage_event: EventFactory) -> None:
    event = usage_event(
        model={"name": "gpt-4o", "version": "gpt-4o-2024-08-06", "context_window": 128000},
        prompt_tokens=1000,
        completion_tokens=200,
        latency_ms=420,
        tags=["a", "b"],
        metadata={"k": "v"},
        source={"type": "sdk", "endpoint": "/v1/chat/completions"},
    )
    (row,) = sink_rows(catalog, [event])

    assert list(row) == list(USAGE_COSTS_COLUMNS)
    assert row == {
        "event_id": event.id,
        "timestamp": event.timestamp,
        "provider": "openai",
        "model": "gpt-4o",
        "model_version": "gpt-4o-2024-08-06",
        "context_window": 128000,
        "organization_id": "org-test",
        "project_id": "proj-1",
        "user_id": "user-1",
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "cached_tokens": 100,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": 420,
        "tags": ["a", "b"],
        "metadata": [("k", "v")],
        "source_type": "sdk",
        "source_endpoint": "/v1/chat/completions",
        "pricing_status": "priced",
        "input_cost": Decimal("0.0022500000"),  # 900 * $2.5
        "cached_cost": Decimal("0.0001250000"),  # 100 * $1.25
        "cache_write_cost": Decimal("0E-10"),
        "output_cost": Decimal("0.0020000000"),  # 200 * $10
        "reasoning_cost": Decimal("0E-10"),
        "request_cost": Decimal("0E-10"),
        "total_cost": Decimal("0.0043750000"),
        "currency": "USD",
        "price_source": "genai-prices==0.2.3 openai/gpt-4o",
        "price_rates": (
            '{"type":"catalog","catalog":"genai-prices==0.2.3","model":"openai/gpt-4o",'
            '"input_price_per_million":"2.5","cached_input_price_per_million":"1.25",'
            '"cache_write_price_per_million":"2.5",'
            '"output_price_per_million":"10","reasoning_price_per_million":"10"}'
        ),
        "tier_volume": None,
        "unpriced_reason": None,
        "ingested_at": event.ingested_at,
        "priced_at": PRICED_AT,
    }


def test_unpriced_minimal_row(catalog: PriceCatalog) -> None:
    event = UsageEvent.parse(
        {"provider": "openai", "model": "x", "organization_id": "o", "prompt_tokens": 1, "completion_tokens": 2}
    )
    (row,) = sink_rows(catalog, [event])
    day = event.timestamp.date().isoformat()
    for column in ("input_cost", "cached_cost", "output_cost", "reasoning_cost", "total_cost", "price_source"):
        assert row[column] is None, column
    for column in ("model_version", "context_window", "project_id", "user_id", "latency_ms"):
        assert row[column] is None, column
    assert row["source_type"] is None
    assert row["source_endpoint"] is None
    assert row["tags"] == []
    assert row["metadata"] == []
    assert row["pricing_status"] == "unpriced"
    assert row["unpriced_reason"] == f"Pricing table not found for openai/x on {day}"
    assert row["total_tokens"] == 3


def test_dedupe_keeps_last_row_per_key() -> None:
    table = marked(
        [
            ("org-a", "e1"),
            ("org-a", "e2"),
            ("org-b", "e1"),  # same event id, other organization: a different row
            ("org-a", "e1"),
            ("org-a", "e3"),
            ("org-a", "e2"),
            ("org-a", "e1"),
        ]
    )
    kept, dropped = dedupe(table)

    assert dropped == 3
    assert kept.to_pylist() == [
        {"organization_id": "org-b", "event_id": "e1", "prompt_tokens": 2},
        {"organization_id": "org-a", "event_id": "e3", "prompt_tokens": 4},
        {"organization_id": "org-a", "event_id": "e2", "prompt_tokens": 5},
        {"organization_id": "org-a", "event_id": "e1", "prompt_tokens": 6},
    ]
    assert kept.schema.equals(table.schema)


def test_dedupe_without_duplicates() -> None:
    table = marked([("org", f"e{i}") for i in range(5)])
    kept, dropped = dedupe(table)
    assert dropped == 0
    assert kept.equals(table)


@pytest.mark.parametrize("size", [0, 1])
def test_dedupe_small(size: int) -> None:
    table = marked([("org", "e")] * size)
    kept, dropped = dedupe(table)
    assert (kept.num_rows, dropped) == (size, 0)


def test_dedupe_priced_tables_of_several_messages(catalog: PriceCatalog, usage_event: EventFactory) -> None:
    """Tables of different messages have dictionaries of their own: as the sink concatenates them,
    and once unified (combine_chunks), the dedupe keys on the text."""
    first = [usage_event(organization_id="org-a"), usage_event(organization_id="org-a")]
    replay = usage_event(organization_id="org-a", id=first[1].id, prompt_tokens=5, cached_tokens=0)
    other = usage_event(organization_id="org-b", id=first[0].id)
    tables = [
        catalog.price(table_from_events(events), millis(PRICED_AT)) for events in (first, [other, replay], [first[0]])
    ]
    concatenated = pa.concat_tables(tables)
    for table in (concatenated, concatenated.combine_chunks()):
        kept, dropped = dedupe(table)
        assert dropped == 2
        assert kept.schema.equals(PRICED_SCHEMA)
        assert [(r["organization_id"], r["event_id"], r["prompt_tokens"]) for r in kept.to_pylist()] == [
            ("org-b", first[0].id, other.prompt_tokens),
            ("org-a", first[1].id, 5),
            ("org-a", first[0].id, first[0].prompt_tokens),
        ]
        assert decode_priced(encode_priced(kept)).to_pylist() == kept.to_pylist()
