"""Versioned DDL, applied in order at start-up; the applied versions are recorded in ClickHouse.

Design of ``usage_costs``: ``ReplacingMergeTree(priced_at)`` ordered by
``(organization_id, event_id)`` is what makes writes idempotent: an event id written twice (a
replayed batch, a producer retry) collapses to one row, and where it was priced twice (a
``cost-ops reprice``) the latest pricing is the row that stays. Merges happen in the
background, so every query reads it with ``FINAL``, which deduplicates at read time; counts
are exact either way. Partitions are monthly by event time. Background merges only collapse
copies within a partition, so an id re-sent with a timestamp in another month would stay on disk twice; FINAL on current
ClickHouse still collapses such copies at read time, but ids are meant to name one call.

Deletes (migration 4): ``ReplacingMergeTree(priced_at, deleted)``. A delete writes a copy of the
row with ``deleted = 1`` and ``priced_at`` = :data:`TOMBSTONE_VERSION` (the largest DateTime64),
so no later write of that id (a replay, a reprice) can outrank it: FINAL returns nothing for it,
and merges keep the tombstone (cleanup merges are never run).

Rollups (migration 5): ``usage_costs_hourly`` and its bookkeeping; see :mod:`sinks.rollup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

_V1_COLUMNS = ", ".join(
    (
        "event_id",
        "timestamp",
        "provider",
        "model",
        "model_version",
        "context_window",
        "organization_id",
        "project_id",
        "user_id",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "latency_ms",
        "tags",
        "metadata",
        "source_type",
        "source_endpoint",
        "pricing_status",
        "input_cost",
        "cached_cost",
        "output_cost",
        "reasoning_cost",
        "total_cost",
        "currency",
        "price_source",
        "unpriced_reason",
        "ingested_at",
        "priced_at",
    )
)
"""The columns of migration 1 but ``written_at``: what migration 2 copies."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    apply: Callable[[Client, str], None] | None = None
    """Runs instead of ``statements`` when a step needs to look before it acts."""


USAGE_COSTS_V2 = """
            CREATE TABLE IF NOT EXISTS {db}.usage_costs_next (
                event_id String,
                timestamp DateTime64(3, 'UTC'),
                provider LowCardinality(String),
                model LowCardinality(String),
                model_version Nullable(String),
                context_window Nullable(UInt64),
                organization_id LowCardinality(String),
                project_id Nullable(String),
                user_id Nullable(String),
                prompt_tokens UInt64,
                completion_tokens UInt64,
                total_tokens UInt64,
                cached_tokens UInt64,
                cache_write_tokens UInt64 DEFAULT 0,
                reasoning_tokens UInt64,
                latency_ms Nullable(UInt64),
                tags Array(String),
                metadata Map(String, String),
                source_type Nullable(String),
                source_endpoint Nullable(String),
                pricing_status LowCardinality(String),
                input_cost Nullable(Decimal(38, 10)),
                cached_cost Nullable(Decimal(38, 10)),
                cache_write_cost Nullable(Decimal(38, 10)),
                output_cost Nullable(Decimal(38, 10)),
                reasoning_cost Nullable(Decimal(38, 10)),
                request_cost Nullable(Decimal(38, 10)),
                total_cost Nullable(Decimal(38, 10)),
                currency LowCardinality(String),
                price_source LowCardinality(Nullable(String)),
                price_rates LowCardinality(Nullable(String)),
                tier_volume Nullable(UInt64),
                unpriced_reason Nullable(String),
                ingested_at DateTime64(3, 'UTC'),
                priced_at DateTime64(3, 'UTC'),
                written_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree(priced_at)
            PARTITION BY toYYYYMM(timestamp)
            ORDER BY (organization_id, event_id)
            """
"""``usage_costs`` since migration 2 (created as ``usage_costs_next``, then exchanged in)."""


def _upgrade_to_v2(client: Client, db: str) -> None:
    """Rebuild ``usage_costs`` with the new columns and ``ReplacingMergeTree(priced_at)``
    (an engine's version column cannot be added in place).

    Each step checks before it acts, so a run cut short is finished by the next start: the
    copy goes to a fresh ``usage_costs_next`` and ``EXCHANGE TABLES`` swaps the two atomically.
    Stop the sinks while it runs: a row written to the old table after the copy would be lost.
    """
    columns = {row[0] for row in client.query(f"SELECT name FROM system.columns WHERE database = '{db}' "
                                               "AND table = 'usage_costs'").result_rows}  # fmt: skip
    if "price_rates" not in columns:
        client.command(f"DROP TABLE IF EXISTS {db}.usage_costs_next")
        client.command(USAGE_COSTS_V2.format(db=db))
        copied = f"{_V1_COLUMNS}, written_at"
        client.command(f"INSERT INTO {db}.usage_costs_next ({copied}) SELECT {copied} FROM {db}.usage_costs")
        client.command(f"EXCHANGE TABLES {db}.usage_costs AND {db}.usage_costs_next")
    client.command(f"DROP TABLE IF EXISTS {db}.usage_costs_next")


TOMBSTONE_VERSION = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
"""``priced_at`` of a deletion: the largest DateTime64(3), so a tombstone is the latest version forever."""

USAGE_COSTS_V4 = USAGE_COSTS_V2.replace(
    "written_at DateTime64(3, 'UTC') DEFAULT now64(3)\n",
    "written_at DateTime64(3, 'UTC') DEFAULT now64(3),\n                deleted UInt8 DEFAULT 0\n",
).replace("ReplacingMergeTree(priced_at)", "ReplacingMergeTree(priced_at, deleted)")
"""``usage_costs`` since migration 4: ``deleted`` is the engine's is-deleted column."""
assert USAGE_COSTS_V4.count("deleted") == 2, "USAGE_COSTS_V2 changed: rewrite USAGE_COSTS_V4"


def _upgrade_to_v4(client: Client, db: str) -> None:
    """Rebuild ``usage_costs`` with ``ReplacingMergeTree(priced_at, deleted)`` (an engine's
    parameters cannot be altered), the way :func:`_upgrade_to_v2` does: copy to a fresh
    ``usage_costs_next``, then ``EXCHANGE TABLES``. Stop the sinks while it runs."""
    columns = [row[0] for row in client.query(f"SELECT name FROM system.columns WHERE database = '{db}' "
                                              "AND table = 'usage_costs' ORDER BY position").result_rows]  # fmt: skip
    if "deleted" not in columns:
        client.command(f"DROP TABLE IF EXISTS {db}.usage_costs_next")
        client.command(USAGE_COSTS_V4.format(db=db))
        copied = ", ".join(columns)
        client.command(f"INSERT INTO {db}.usage_costs_next ({copied}) SELECT {copied} FROM {db}.usage_costs")
        client.command(f"EXCHANGE TABLES {db}.usage_costs AND {db}.usage_costs_next")
    client.command(f"DROP TABLE IF EXISTS {db}.usage_costs_next")


USAGE_COSTS_HOURLY = """
            CREATE TABLE IF NOT EXISTS {db}.usage_costs_hourly (
                organization_id LowCardinality(String),
                hour DateTime('UTC'),
                currency LowCardinality(String),
                provider LowCardinality(String),
                model LowCardinality(String),
                project_id Nullable(String),
                requests UInt64,
                unpriced UInt64,
                total_cost Nullable(Decimal(38, 10)),
                priced_tokens UInt64,
                total_tokens UInt64,
                prompt_tokens UInt64,
                completion_tokens UInt64,
                cached_tokens UInt64,
                reasoning_tokens UInt64,
                latency_sum UInt64,
                latency_count UInt64,
                latency_p95 AggregateFunction(quantile(0.95), Nullable(UInt64)),
                version DateTime64(6, 'UTC')
            )
            ENGINE = ReplacingMergeTree(version)
            PARTITION BY toYYYYMM(hour)
            ORDER BY (organization_id, hour, currency, provider, model, project_id)
            SETTINGS allow_nullable_key = 1
            """
"""One row per (organization, UTC hour, currency, provider, model, project) computed from
``usage_costs FINAL``; ``requests = 0`` marks a group that no longer exists (see :mod:`sinks.rollup`)."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "usage_costs: one row per priced usage event",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.usage_costs (
                event_id String,
                timestamp DateTime64(3, 'UTC'),
                provider LowCardinality(String),
                model LowCardinality(String),
                model_version Nullable(String),
                context_window Nullable(UInt64),
                organization_id LowCardinality(String),
                project_id Nullable(String),
                user_id Nullable(String),
                prompt_tokens UInt64,
                completion_tokens UInt64,
                total_tokens UInt64,
                cached_tokens UInt64,
                reasoning_tokens UInt64,
                latency_ms Nullable(UInt64),
                tags Array(String),
                metadata Map(String, String),
                source_type Nullable(String),
                source_endpoint Nullable(String),
                pricing_status LowCardinality(String),
                input_cost Nullable(Decimal(38, 10)),
                cached_cost Nullable(Decimal(38, 10)),
                output_cost Nullable(Decimal(38, 10)),
                reasoning_cost Nullable(Decimal(38, 10)),
                total_cost Nullable(Decimal(38, 10)),
                currency LowCardinality(String),
                price_source Nullable(String),
                unpriced_reason Nullable(String),
                ingested_at DateTime64(3, 'UTC'),
                priced_at DateTime64(3, 'UTC'),
                written_at DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(timestamp)
            ORDER BY (organization_id, event_id)
            """,
        ),
    ),
    Migration(
        2,
        "usage_costs: cache writes, request_cost, price_rates, tier_volume; the latest pricing wins (priced_at)",
        (USAGE_COSTS_V2,),
        apply=_upgrade_to_v2,
    ),
    Migration(
        3,
        "cost_windows and alerts: closed event-time windows and the alerts raised on them",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.cost_windows (
                window_id String,
                series String,
                size_seconds UInt32,
                dimension LowCardinality(String),
                organization_id String,
                project_id Nullable(String),
                model Nullable(String),
                currency LowCardinality(String),
                window_start DateTime('UTC'),
                window_end DateTime('UTC'),
                cost Decimal(38, 10),
                prompt_tokens UInt64,
                completion_tokens UInt64,
                total_tokens UInt64,
                requests UInt64,
                unpriced_requests UInt64,
                closed_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(closed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (organization_id, size_seconds, dimension, window_start, window_id)
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.alerts (
                alert_id String,
                type LowCardinality(String),
                organization_id String,
                dimension LowCardinality(String),
                project_id Nullable(String),
                model Nullable(String),
                currency LowCardinality(String),
                window_start DateTime('UTC'),
                window_end DateTime('UTC'),
                size_seconds UInt32,
                actual_cost Decimal(38, 10),
                expected_cost Nullable(Decimal(38, 10)),
                impact Nullable(Decimal(38, 10)),
                score Nullable(Float64),
                method LowCardinality(String),
                threshold Nullable(Float64),
                severity LowCardinality(String),
                direction LowCardinality(String),
                windows UInt32,
                message String,
                details String,
                created_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(created_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (organization_id, window_start, alert_id)
            """,
        ),
    ),
    Migration(
        4,
        "usage_costs: deletes as tombstones (ReplacingMergeTree(priced_at, deleted))",
        (USAGE_COSTS_V4,),
        apply=_upgrade_to_v4,
    ),
    Migration(
        5,
        "usage_costs_hourly rollup, its dirty-hour marks and refreshes; every stored hour marked dirty",
        (
            USAGE_COSTS_HOURLY,
            """
            CREATE TABLE IF NOT EXISTS {db}.rollup_marks (
                organization_id LowCardinality(String),
                hour DateTime('UTC'),
                marked_at DateTime64(6, 'UTC') DEFAULT now64(6)
            )
            ENGINE = ReplacingMergeTree(marked_at)
            ORDER BY (organization_id, hour)
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.rollup_refreshes (
                organization_id LowCardinality(String),
                hour DateTime('UTC'),
                refreshed_through DateTime64(6, 'UTC')
            )
            ENGINE = ReplacingMergeTree(refreshed_through)
            ORDER BY (organization_id, hour)
            """,
            # The hours stored before the rollup existed: the sink's refresher computes them.
            """
            INSERT INTO {db}.rollup_marks (organization_id, hour)
            SELECT DISTINCT organization_id, toStartOfHour(timestamp) FROM {db}.usage_costs FINAL
            """,
        ),
    ),
)


def apply_migrations(client: Client, database: str) -> list[int]:
    """Create the database and apply every migration not yet recorded. Returns those applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        if migration.apply is not None:
            migration.apply(client, database)
        else:
            for statement in migration.statements:
                client.command(statement.format(db=database))
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.description]],
            column_names=["version", "description"],
        )
        applied.append(migration.version)
    return applied
