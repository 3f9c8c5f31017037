"""Versioned DDL, applied in order at start-up; the applied versions are recorded in ClickHouse.

Design of ``usage_costs``: ``ReplacingMergeTree`` ordered by ``(organization_id, event_id)``
is what makes writes idempotent: an event id written twice (a replayed batch, a producer
retry) collapses to one row. Merges happen in the background, so every query reads it with
``FINAL``, which deduplicates at read time; counts are exact either way. Partitions are
monthly by event time. Background merges only collapse copies within a partition, so an id
re-sent with a timestamp in another month would stay on disk twice; FINAL on current
ClickHouse still collapses such copies at read time, but ids are meant to name one call.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


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
        for statement in migration.statements:
            client.command(statement.format(db=database))
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.description]],
            column_names=["version", "description"],
        )
        applied.append(migration.version)
    return applied
