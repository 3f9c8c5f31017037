"""Priced tables -> ``usage_costs`` rows: the batch-level dedupe."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

USAGE_COSTS_COLUMNS: tuple[str, ...] = (
    "event_id", "timestamp", "provider", "model", "model_version", "context_window",
    "organization_id", "project_id", "user_id", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "latency_ms", "tags", "metadata",
    "source_type", "source_endpoint", "pricing_status", "input_cost", "cached_cost", "cache_write_cost",
    "output_cost", "reasoning_cost", "request_cost", "total_cost", "currency", "price_source",
    "price_rates", "tier_volume", "unpriced_reason", "ingested_at", "priced_at",
)  # fmt: skip
"""The columns the sink writes (``written_at`` is the table's default)."""


def dedupe(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep the last row per (organization_id, event_id), as the table itself does.

    Returns the rows and how many duplicates were dropped. This is only the first line of
    defence: duplicates across batches are collapsed by ReplacingMergeTree and FINAL.
    """
    if table.num_rows < 2:
        return table, 0
    keys = pa.table(
        {
            # Plain text keys: the messages' dictionaries differ, and grouping cannot unify them.
            "organization_id": table.column("organization_id").cast(pa.string()),
            "event_id": table.column("event_id"),
            "_row": pa.array(np.arange(table.num_rows, dtype=np.int64)),
        }
    )
    last = keys.group_by(["organization_id", "event_id"], use_threads=False).aggregate([("_row", "max")])
    if last.num_rows == table.num_rows:
        return table, 0
    rows = pc.sort_indices(last.column("_row_max"))
    return table.take(pc.take(last.column("_row_max"), rows)), table.num_rows - last.num_rows
