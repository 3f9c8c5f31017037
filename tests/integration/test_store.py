"""The ClickHouse store and queries on a real engine (chDB)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.columns import millis, table_from_events
from schemas.query import AggregateParams, CostFilterParams, PageParams
from schemas.usage import UsageEvent
from sinks.errors import QueryError
from sinks.migrations import MIGRATIONS, apply_migrations
from sinks.queries import CostQueries
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog


def _rows(events: list[UsageEvent], catalog: PriceCatalog) -> pa.Table:
    return catalog.price(table_from_events(events), millis(datetime.now(UTC)))


def _cost(event: UsageEvent, catalog: PriceCatalog) -> Decimal:
    cost = _rows([event], catalog).column("total_cost")[0].as_py()
    assert isinstance(cost, Decimal)
    return cost


def test_migrations_are_recorded_and_idempotent(store: ClickHouseStore) -> None:
    assert store.migrate() == []
    assert apply_migrations(store.client, store.database) == []
    versions = store.query(f"SELECT version FROM {store.table('schema_migrations')} ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_duplicates_across_inserts_count_once(store: ClickHouseStore, usage_event: Callable[..., UsageEvent]) -> None:
    catalog = PriceCatalog()
    events = [usage_event(organization_id="org-dup") for _ in range(50)]
    rows = _rows(events, catalog)
    # The same events written three times, in separate inserts (separate parts, unmerged).
    for _ in range(3):
        store.insert_arrow("usage_costs", rows)
    raw = store.query(f"SELECT count() FROM {store.table('usage_costs')}")[0][0]
    assert raw >= 50  # copies may still be on disk ...
    queries = CostQueries(store)
    summary = queries.summary(CostFilterParams(organization_id="org-dup"))
    expected = sum((_cost(e, catalog) for e in events), Decimal(0))
    assert summary.total_requests == 50  # ... but every query counts each event once
    assert summary.total_cost == expected
    page = queries.list_costs(CostFilterParams(organization_id="org-dup"), PageParams(page=1, per_page=20))
    assert page.total == 50 and len(page.data) == 20 and page.has_more
    last = queries.list_costs(CostFilterParams(organization_id="org-dup"), PageParams(page=3, per_page=20))
    assert len(last.data) == 10 and not last.has_more
    ids = {r.id for p in (1, 2, 3) for r in queries.list_costs(
        CostFilterParams(organization_id="org-dup"), PageParams(page=p, per_page=20)).data}  # fmt: skip
    assert ids == {e.id for e in events}
    stats = queries.stats(CostFilterParams(organization_id="org-dup"))
    assert (stats.events, stats.priced_requests, stats.unpriced_requests) == (50, 50, 0)
    assert stats.total_tokens == sum(e.tokens_total for e in events)
    assert (
        stats.freshness is not None and 0 <= stats.freshness.p50_ms <= stats.freshness.p99_ms <= stats.freshness.max_ms
    )
    assert queries.stats(CostFilterParams(organization_id="nobody")).freshness is None


def test_aggregate_by_hour_and_dimension_is_exact(
    store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    catalog = PriceCatalog()
    events = [
        usage_event(organization_id="org-agg", timestamp=f"2025-01-15T{h:02d}:30:00Z", provider=p, model=m)
        for h in (9, 10)
        for p, m in (("openai", "gpt-4o"), ("anthropic", "claude-3-5-sonnet-20241022"))
        for _ in range(3)
    ]
    store.insert_arrow("usage_costs", _rows(events, catalog))
    agg = CostQueries(store).aggregate(
        CostFilterParams(organization_id="org-agg", start_date="2025-01-15", end_date="2025-01-15"),
        AggregateParams(group_by=("provider",), granularity="hour"),
    )
    assert len(agg.data) == 4
    for group in agg.data:
        members = [
            e for e in events
            if e.provider == group.model_extra["provider"] and e.timestamp.hour == group.period_start.hour  # type: ignore[index,union-attr]
        ]  # fmt: skip
        assert group.request_count == 3 == len(members)
        assert group.period_start is not None and group.period_start.tzinfo is not None
        assert group.total_cost == sum(
            (_cost(e, catalog) for e in members),
            Decimal(0),
        )


def test_unpriced_events_are_counted_but_not_costed(
    store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    catalog = PriceCatalog()
    events = [usage_event(organization_id="org-unp"), usage_event(organization_id="org-unp", model="no-such-model")]
    store.insert_arrow("usage_costs", _rows(events, catalog))
    summary = CostQueries(store).summary(CostFilterParams(organization_id="org-unp"))
    assert (summary.total_requests, summary.priced_requests, summary.unpriced_requests) == (2, 1, 1)
    priced = _cost(events[0], catalog)
    assert summary.total_cost == priced == summary.avg_cost_per_request
    by_model = {b.name: b for b in summary.by_model}
    assert by_model["no-such-model"].total_cost is None  # unknown, not zero
    assert by_model["no-such-model"].unpriced_requests == 1
    assert by_model["gpt-4o"].total_cost == priced
    assert [(b.name, b.requests, b.unpriced_requests) for b in summary.by_provider] == [("openai", 2, 1)]


def test_bad_statement_is_a_query_error(store: ClickHouseStore) -> None:
    with pytest.raises(QueryError):
        store.query("SELECT no_such_column FROM " + store.table("usage_costs"))


TZ_PROBE = """
import sys
from datetime import UTC, datetime
import clickhouse_connect
from schemas.columns import millis, table_from_events
from schemas.query import AggregateParams, CostFilterParams, PageParams
from schemas.usage import UsageEvent
from sinks.queries import CostQueries
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog

store = ClickHouseStore(clickhouse_connect.get_client(interface="chdb", path=sys.argv[1]), "tz")
store.migrate()
event = UsageEvent.parse({"provider": "openai", "model": "gpt-4o", "organization_id": "o",
    "prompt_tokens": 10, "completion_tokens": 5, "timestamp": "2025-01-15T23:30:00Z"})
store.insert_arrow("usage_costs", PriceCatalog().price(table_from_events([event]), millis(datetime.now(UTC))))
queries = CostQueries(store)
hour = queries.aggregate(CostFilterParams(), AggregateParams(granularity="hour")).data[0].period_start
day = queries.aggregate(CostFilterParams(), AggregateParams(granularity="day")).data[0].period_start
stamp = queries.list_costs(CostFilterParams(), PageParams()).data[0].timestamp
print(hour.isoformat(), day.isoformat(), stamp.isoformat())
"""


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_buckets_and_timestamps_are_utc_whatever_the_host_zone(tmp_path: Path, zone: str) -> None:
    """A host in another time zone must not shift buckets or relabel local times as UTC."""
    result = subprocess.run(
        [sys.executable, "-c", TZ_PROBE, str(tmp_path / "ch")],
        env={**os.environ, "TZ": zone}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "2025-01-15T23:00:00+00:00",
        "2025-01-15T00:00:00+00:00",
        "2025-01-15T23:30:00+00:00",
    ]


def test_migration_2_keeps_existing_rows_and_lets_the_latest_pricing_win(
    chdb_client: Any, usage_event: Callable[..., UsageEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before custom pricing: its rows survive the upgrade, and from then on a
    second pricing of an event (a reprice) replaces the first, whatever order they arrive in."""
    import uuid

    import sinks.migrations

    store = ClickHouseStore(chdb_client, f"test_{uuid.uuid4().hex[:12]}")
    monkeypatch.setattr(sinks.migrations, "MIGRATIONS", MIGRATIONS[:1])
    assert store.migrate() == [1]
    catalog = PriceCatalog()
    event = usage_event(organization_id="org-old")
    new_columns = ["cache_write_tokens", "cache_write_cost", "request_cost", "price_rates", "tier_volume"]
    old = _rows([event], catalog).drop_columns(new_columns)
    store.insert_arrow("usage_costs", old)
    monkeypatch.setattr(sinks.migrations, "MIGRATIONS", MIGRATIONS)
    # A run cut short before: a half-made copy is left behind.
    store.client.command(sinks.migrations.USAGE_COSTS_V2.format(db=store.database))
    assert store.migrate() == [2, 3, 4, 5]  # and 3 (windows, alerts), 4 (tombstones), 5 (rollup)
    # A run cut short after the exchange, before it was recorded: running again loses nothing.
    store.client.command(f"ALTER TABLE {store.table('schema_migrations')} DELETE WHERE version = 2 "
                         "SETTINGS mutations_sync = 1")  # fmt: skip
    assert store.migrate() == [2]

    queries = CostQueries(store)
    detail = queries.detail(event.id, CostFilterParams())
    assert detail is not None
    assert detail.total_cost == _cost(event, catalog)
    assert (detail.request_cost, detail.price_rates, detail.tier_volume) == (None, None, None)

    later = catalog.price(table_from_events([event]), millis(datetime.now(UTC)) + 60_000)
    earlier = catalog.price(table_from_events([event]), millis(datetime.now(UTC)) - 60_000)
    later = later.set_column(later.schema.get_field_index("price_source"), "price_source",
                             pa.array(["the reprice"]).dictionary_encode())  # fmt: skip
    store.insert_arrow("usage_costs", later)
    store.insert_arrow("usage_costs", earlier)  # a late replay of an older pricing
    detail = queries.detail(event.id, CostFilterParams())
    assert detail is not None and detail.price_source == "the reprice"
    assert queries.summary(CostFilterParams(organization_id="org-old")).total_requests == 1
