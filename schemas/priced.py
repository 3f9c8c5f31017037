"""Priced usage: the usage columns plus each event's exact cost, or why it has none.

On ``priced-usage`` one message is one Arrow IPC stream holding one table (the priced events
of one ``usage-events`` message). Arrow, not Avro, on this internal topic: the sink hands the
table to ClickHouse as it is, and neither the worker nor the sink builds a Python object per
event (docs/architecture.md, "Wire formats"). Costs are ``decimal128(38, 10)``, exactly the
ClickHouse ``Decimal(38, 10)`` columns; an unpriced event has null costs, never zero.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

import pyarrow as pa

from schemas.columns import TEXT, TIMESTAMP, USAGE_SCHEMA, compact
from schemas.errors import DecodeError

COST_PLACES = Decimal("0.0000000001")
"""Every cost is a Decimal with 10 places (Decimal(38, 10) in ClickHouse)."""
MONEY_CONTEXT = Context(prec=60)
"""Wide enough for any Decimal(38, 10) sum: the default 28 digits fail past 10^18 at 10 places."""


def money(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``value`` at 10 places, whatever its size (Decimal(38, 10) holds up to 10^28)."""
    return value.quantize(COST_PLACES, rounding=rounding, context=MONEY_CONTEXT)


MONEY = pa.decimal128(38, 10)
CONTENT_TYPE = b"application/vnd.apache.arrow.stream"
"""The ``content-type`` header of every ``priced-usage`` message."""


class PricingStatus(StrEnum):
    PRICED = "priced"
    UNPRICED = "unpriced"


PRICE_FIELDS = pa.schema(
    [
        ("pricing_status", TEXT),
        ("input_cost", MONEY),  # uncached prompt tokens
        ("cached_cost", MONEY),  # cache-read prompt tokens
        ("cache_write_cost", MONEY),  # prompt tokens written to the cache
        ("output_cost", MONEY),  # completion tokens less reasoning
        ("reasoning_cost", MONEY),
        ("request_cost", MONEY),  # per-request fee and overage
        ("total_cost", MONEY),
        ("currency", TEXT),
        ("price_source", TEXT),  # the custom rule's id, or the catalog version and model
        ("price_rates", TEXT),  # JSON: the rates applied, enough to recompute the cost
        ("tier_volume", pa.uint64()),  # tiered rules: the month's volume before this event
        ("unpriced_reason", TEXT),
        ("priced_at", TIMESTAMP),
    ]
)

PRICED_SCHEMA = pa.schema(list(USAGE_SCHEMA) + list(PRICE_FIELDS))
"""Columns of a priced table: the ``usage_costs`` columns (but ``written_at``), in order."""


def pricing_not_found(provider: str, model: str, day: date) -> str:
    """The seeds' ``COST_001`` message: ``Pricing table not found for openai/gpt-4 on 2025-01-15``."""
    return f"Pricing table not found for {provider}/{model} on {day.isoformat()}"


def encode_priced(table: pa.Table) -> bytes:
    """One priced table as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, PRICED_SCHEMA) as writer:
        # A slice of a take's table still holds the dictionaries of the whole take: cut them down.
        writer.write_table(
            compact(table if table.schema.equals(PRICED_SCHEMA) else table.cast(PRICED_SCHEMA), oversized_only=True)
        )
    return bytes(sink.getvalue())


def decode_priced(data: bytes | None) -> pa.Table:
    """The priced table of a message; :class:`DecodeError` when it is not one."""
    if not data:
        raise DecodeError("empty message")
    try:
        table = pa.ipc.open_stream(data).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise DecodeError(f"not an Arrow IPC stream: {exc}") from exc
    if not table.schema.equals(PRICED_SCHEMA):
        missing = sorted(set(PRICED_SCHEMA.names) - set(table.schema.names))
        raise DecodeError(f"not a priced-usage table (missing or mistyped columns: {', '.join(missing) or 'types'})")
    return table
