"""Priced records -> usage_costs rows and the in-batch dedupe (sinks/rows.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.codec import UsageCodec
from schemas.priced import CostBreakdown, PricedUsage, PricingStatus
from schemas.registry import BuiltinSchemaTable
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent
from sinks.rows import USAGE_COSTS_COLUMNS, dedupe_rows, usage_cost_row

EventFactory = Callable[..., UsageEvent]
PRICED_AT = datetime(2025, 1, 15, 10, 0, 1, tzinfo=UTC)


@pytest.fixture
def codec() -> UsageCodec:
    return UsageCodec(AvroSerde(BuiltinSchemaTable()), "usage-events-value", "priced-usage-value")


def decoded(codec: UsageCodec, event: UsageEvent, priced: bool = True) -> dict[str, Any]:
    cost = CostBreakdown(
        input_cost=Decimal("0.0022500000"),
        cached_cost=Decimal("0.0001250000"),
        output_cost=Decimal("0.0020000000"),
        reasoning_cost=Decimal("0E-10"),
        price_source="genai-prices==0.2.3 openai/gpt-4o",
    )
    usage = PricedUsage(
        event=event,
        pricing_status=PricingStatus.PRICED if priced else PricingStatus.UNPRICED,
        cost=cost if priced else None,
        unpriced_reason=None if priced else "no list price",
        priced_at=PRICED_AT,
    )
    return codec.serde.decode(codec.encode_priced(usage))


def row(event_id: str, organization_id: str, marker: int) -> list[Any]:
    values: list[Any] = [None] * len(USAGE_COSTS_COLUMNS)
    values[USAGE_COSTS_COLUMNS.index("event_id")] = event_id
    values[USAGE_COSTS_COLUMNS.index("organization_id")] = organization_id
    values[USAGE_COSTS_COLUMNS.index("prompt_tokens")] = marker
    return values


def test_columns_are_unique() -> None:
    assert len(USAGE_COSTS_COLUMNS) == len(set(USAGE_COSTS_COLUMNS)) == 30


def test_usage_cost_row_one_value_per_column(codec: UsageCodec, usage_event: EventFactory) -> None:
    event = usage_event(
        model={"name": "gpt-4o", "version": "gpt-4o-2024-08-06", "context_window": 128000},
        latency_ms=420,
        tags=["a", "b"],
        metadata={"k": "v"},
        source={"type": "sdk", "endpoint": "/v1/chat/completions"},
    )
    values = usage_cost_row(decoded(codec, event))

    assert len(values) == len(USAGE_COSTS_COLUMNS)
    by_name = dict(zip(USAGE_COSTS_COLUMNS, values, strict=True))
    assert by_name == {
        "event_id": event.id,
        "timestamp": event.timestamp,
        "provider": "openai",
        "model": "gpt-4o",
        "model_version": "gpt-4o-2024-08-06",
        "context_window": 128000,
        "organization_id": "org-test",
        "project_id": "proj-1",
        "user_id": "user-1",
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.prompt_tokens + event.completion_tokens,
        "cached_tokens": 100,
        "reasoning_tokens": 0,
        "latency_ms": 420,
        "tags": ["a", "b"],
        "metadata": {"k": "v"},
        "source_type": "sdk",
        "source_endpoint": "/v1/chat/completions",
        "pricing_status": "priced",
        "input_cost": Decimal("0.0022500000"),
        "cached_cost": Decimal("0.0001250000"),
        "output_cost": Decimal("0.0020000000"),
        "reasoning_cost": Decimal("0E-10"),
        "total_cost": Decimal("0.0043750000"),
        "currency": "USD",
        "price_source": "genai-prices==0.2.3 openai/gpt-4o",
        "unpriced_reason": None,
        "ingested_at": event.ingested_at,
        "priced_at": PRICED_AT,
    }


def test_usage_cost_row_unpriced_minimal(codec: UsageCodec) -> None:
    event = UsageEvent.parse(
        {"provider": "openai", "model": "x", "organization_id": "o", "prompt_tokens": 1, "completion_tokens": 2}
    )
    by_name = dict(zip(USAGE_COSTS_COLUMNS, usage_cost_row(decoded(codec, event, priced=False)), strict=True))
    for column in ("input_cost", "cached_cost", "output_cost", "reasoning_cost", "total_cost", "price_source"):
        assert by_name[column] is None, column
    for column in ("model_version", "context_window", "project_id", "user_id", "latency_ms"):
        assert by_name[column] is None, column
    assert by_name["source_type"] is None
    assert by_name["source_endpoint"] is None
    assert by_name["tags"] == []
    assert by_name["metadata"] == {}
    assert by_name["pricing_status"] == "unpriced"
    assert by_name["unpriced_reason"] == "no list price"
    assert by_name["total_tokens"] == 3


def test_dedupe_keeps_last_row_per_key() -> None:
    rows = [
        row("e1", "org-a", 1),
        row("e2", "org-a", 2),
        row("e1", "org-b", 3),  # same event id, other organization: a different row
        row("e1", "org-a", 4),
        row("e3", "org-a", 5),
        row("e2", "org-a", 6),
        row("e1", "org-a", 7),
    ]
    kept, dropped = dedupe_rows(rows)

    assert dropped == 3
    marker = USAGE_COSTS_COLUMNS.index("prompt_tokens")
    assert {(r[6], r[0]): r[marker] for r in kept} == {
        ("org-a", "e1"): 7,
        ("org-a", "e2"): 6,
        ("org-b", "e1"): 3,
        ("org-a", "e3"): 5,
    }
    assert len(kept) == 4


def test_dedupe_without_duplicates() -> None:
    rows = [row(f"e{i}", "org", i) for i in range(5)]
    kept, dropped = dedupe_rows(iter(rows))
    assert dropped == 0
    assert kept == rows


def test_dedupe_empty() -> None:
    assert dedupe_rows([]) == ([], 0)


def test_dedupe_key_positions_match_columns() -> None:
    assert USAGE_COSTS_COLUMNS[0] == "event_id"
    assert USAGE_COSTS_COLUMNS[6] == "organization_id"
