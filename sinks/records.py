"""The JSON records of ``cost-windows`` and ``alerts`` as Arrow tables for ClickHouse."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from schemas.errors import DecodeError

MONEY = pa.decimal128(38, 10)
UTC_MS = pa.timestamp("ms", tz="UTC")
UTC_S = pa.timestamp("s", tz="UTC")

WINDOW_SCHEMA = pa.schema(
    [
        ("window_id", pa.string()),
        ("series", pa.string()),
        ("size_seconds", pa.uint32()),
        ("dimension", pa.string()),
        ("organization_id", pa.string()),
        ("project_id", pa.string()),
        ("model", pa.string()),
        ("currency", pa.string()),
        ("window_start", UTC_S),
        ("window_end", UTC_S),
        ("cost", MONEY),
        ("prompt_tokens", pa.uint64()),
        ("completion_tokens", pa.uint64()),
        ("total_tokens", pa.uint64()),
        ("requests", pa.uint64()),
        ("unpriced_requests", pa.uint64()),
        ("closed_at", UTC_MS),
    ]
)

ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("type", pa.string()),
        ("organization_id", pa.string()),
        ("dimension", pa.string()),
        ("project_id", pa.string()),
        ("model", pa.string()),
        ("currency", pa.string()),
        ("window_start", UTC_S),
        ("window_end", UTC_S),
        ("size_seconds", pa.uint32()),
        ("actual_cost", MONEY),
        ("expected_cost", MONEY),
        ("impact", MONEY),
        ("score", pa.float64()),
        ("method", pa.string()),
        ("threshold", pa.float64()),
        ("severity", pa.string()),
        ("direction", pa.string()),
        ("windows", pa.uint32()),
        ("message", pa.string()),
        ("details", pa.string()),
        ("created_at", UTC_MS),
    ]
)

_TIMES = {"window_start", "window_end", "closed_at", "created_at"}
_MONEY = {"cost", "actual_cost", "expected_cost", "impact"}


def parse_record(value: bytes | None, schema: pa.Schema) -> dict[str, Any]:
    """A record checked against ``schema``'s fields; DecodeError names what is wrong."""
    try:
        record = json.loads(value or b"")
    except ValueError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise DecodeError("not a JSON object")
    row: dict[str, Any] = {}
    for field in schema:
        name = field.name
        if name == "details":
            row[name] = json.dumps(record, separators=(",", ":"), sort_keys=True)
            continue
        raw = record.get(name)
        try:
            if raw is None:
                row[name] = None
            elif name in _TIMES:
                row[name] = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            elif name in _MONEY:
                row[name] = Decimal(str(raw))
            else:
                row[name] = raw
        except ValueError as exc:
            raise DecodeError(f"{name}: {exc}") from exc
    for name in (schema.names[0], "organization_id"):
        if not row.get(name):
            raise DecodeError(f"{name}: missing")
    return row


def records_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows as one table; of two rows with one id (a window closed twice), the last stays."""
    latest = {row[schema.names[0]]: row for row in rows}
    return pa.Table.from_pylist(list(latest.values()), schema=schema)
