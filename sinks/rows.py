"""Priced Avro records -> ``usage_costs`` rows, and the batch-level dedupe."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

USAGE_COSTS_COLUMNS: tuple[str, ...] = (
    "event_id", "timestamp", "provider", "model", "model_version", "context_window",
    "organization_id", "project_id", "user_id", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "reasoning_tokens", "latency_ms", "tags", "metadata",
    "source_type", "source_endpoint", "pricing_status", "input_cost", "cached_cost",
    "output_cost", "reasoning_cost", "total_cost", "currency", "price_source",
    "unpriced_reason", "ingested_at", "priced_at",
)  # fmt: skip


def usage_cost_row(record: dict[str, Any]) -> list[Any]:
    """One decoded ``priced-usage`` record as a row in ``USAGE_COSTS_COLUMNS`` order."""
    model = record["model"]
    source = record.get("source") or {}
    return [
        record["id"], record["timestamp"], record["provider"], model["name"], model.get("version"),
        model.get("context_window"), record["organization_id"], record.get("project_id"),
        record.get("user_id"), record["prompt_tokens"], record["completion_tokens"],
        record["total_tokens"], record["cached_tokens"], record["reasoning_tokens"],
        record.get("latency_ms"), list(record.get("tags") or []), dict(record.get("metadata") or {}),
        source.get("type"), source.get("endpoint"), record["pricing_status"], record.get("input_cost"),
        record.get("cached_cost"), record.get("output_cost"), record.get("reasoning_cost"),
        record.get("total_cost"), record["currency"], record.get("price_source"),
        record.get("unpriced_reason"), record["ingested_at"], record["priced_at"],
    ]  # fmt: skip


def dedupe_rows(rows: Iterable[list[Any]]) -> tuple[list[list[Any]], int]:
    """Keep the last row per (organization_id, event_id), as the table itself does.

    Returns the rows and how many duplicates were dropped. This is only the first line of
    defence: duplicates across batches are collapsed by ReplacingMergeTree and FINAL.
    """
    latest: dict[tuple[str, str], list[Any]] = {}
    total = 0
    for row in rows:
        total += 1
        latest[(row[6], row[0])] = row
    return list(latest.values()), total - len(latest)
