"""``cost-ops query`` and ``cost-ops summary``: read the API, print table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.errors import InvalidInputError

RANGES: dict[str, timedelta] = {
    "last-hour": timedelta(hours=1),
    "last-24-hours": timedelta(hours=24),
    "last-7-days": timedelta(days=7),
    "last-30-days": timedelta(days=30),
    "last-90-days": timedelta(days=90),
}
QUERY_COLUMNS = (
    "timestamp", "organization_id", "provider", "model", "prompt_tokens", "completion_tokens",
    "cached_tokens", "total_cost", "pricing_status",
)  # fmt: skip


@dataclass(frozen=True)
class Window:
    """What to read: a named range ending now, or explicit ISO dates (which win)."""

    range_name: str = "last-24-hours"
    start_date: str | None = None
    end_date: str | None = None

    def params(self, now: datetime | None = None) -> dict[str, str]:
        if self.start_date or self.end_date:
            explicit = {"start_date": self.start_date, "end_date": self.end_date}
            return {k: v for k, v in explicit.items() if v}
        if self.range_name not in RANGES:
            raise InvalidInputError("unknown range", {"range": f"must be one of: {', '.join(RANGES)}"})
        end = now or datetime.now(UTC)
        return {"start_date": (end - RANGES[self.range_name]).isoformat(), "end_date": end.isoformat()}

    def label(self) -> str:
        if self.start_date or self.end_date:
            return f"{self.start_date or 'beginning'} to {self.end_date or 'now'}"
        params = self.params()
        return f"{params['start_date'][:10]} to {params['end_date'][:10]}"


def _filters(window: Window, organization: str | None, provider: str | None, model: str | None) -> dict[str, Any]:
    params: dict[str, Any] = window.params()
    for key, value in (("organization_id", organization), ("provider", provider), ("model", model)):
        if value:
            params[key] = value
    return params


def query(
    client: ApiClient, window: Window, output: str, organization: str | None, provider: str | None,
    model: str | None, limit: int,
) -> str:  # fmt: skip
    """Cost records of the range, newest first, rendered as ``output``."""
    params = _filters(window, organization, provider, model)
    records: list[dict[str, Any]] = []
    page = 1
    while len(records) < limit:
        answer = client.get("/api/v1/costs", {**params, "page": page, "per_page": min(1000, limit)})
        records.extend(answer["data"])
        if not answer["has_more"]:
            break
        page += 1
    records = records[:limit]
    if output == "json":
        return json.dumps(records, indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else list(QUERY_COLUMNS))
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue().rstrip("\n")
    return _table(records)


def _table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no cost records in this range"
    rows = [[_cell(r.get(c)) for c in QUERY_COLUMNS] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(QUERY_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(QUERY_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _usd(value: str | Decimal) -> str:
    """Exact amount, at least 6 decimals as in the seeds, never rounded away."""
    text = f"{Decimal(value):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(6, "0")
    return f"${whole}.{frac}"


def summary(client: ApiClient, window: Window, organization: str | None, output: str) -> str:
    """The seeds' summary block (or the raw JSON)."""
    s = client.get("/api/v1/costs/summary", _filters(window, organization, None, None))
    if output == "json":
        return json.dumps(s, indent=2)
    lines = [
        "=== Cost Summary ===",
        f"Period: {window.label()}",
        f"Organization: {organization or 'all'}",
        "",
        f"Total Cost: {_usd(s['total_cost'])}",
        f"Total Requests: {s['total_requests']:,}",
        f"Avg Cost/Request: {_usd(s['avg_cost_per_request'])}",
    ]
    if s["unpriced_requests"]:
        lines.append(f"Unpriced Requests: {s['unpriced_requests']:,} (no known price; not in the total)")
    for title, key in (("By Provider", "by_provider"), ("By Model", "by_model")):
        lines += ["", f"--- {title} ---"]
        lines += [f"{b['name']}: {_usd(b['total_cost'])}" for b in s[key]]
    return "\n".join(lines)
