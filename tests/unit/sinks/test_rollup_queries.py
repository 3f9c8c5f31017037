"""Golden SQL of the rollup's builders (sinks/rollup.py, sinks/rollup_queries.py, sinks/deletion.py)
and the split of a range between the rollup and the base table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from schemas.analytics import SeriesParams
from schemas.query import AggregateParams, CostFilterParams
from sinks.deletion import tombstone_query
from sinks.migrations import TOMBSTONE_VERSION
from sinks.queries import Query
from sinks.rollup import HOURLY_AGGREGATES, dirty_query, marks_of, recompute_query, vacate_query
from sinks.rollup_queries import (
    MAX_BASE_RANGES,
    HourPlan,
    aggregate_query,
    hourly_source,
    plan,
    summary_query,
    trend_query,
)

H = timedelta(hours=1)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROLLUP_SELECT = (
    "SELECT organization_id, hour, currency, provider, model, project_id, requests, unpriced, total_cost, "
    "priced_tokens, total_tokens, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_sum, "
    "latency_count, latency_p95 FROM costops.usage_costs_hourly FINAL"
)


def test_plan_of_an_aligned_range_without_dirty_hours_is_all_rollup() -> None:
    filters = CostFilterParams(start_date=T0, end_date=T0 + 24 * H)
    assert plan(filters, []) == HourPlan(T0, T0 + 24 * H, ())
    assert plan(CostFilterParams(), []) == HourPlan(None, None, ())


def test_plan_reads_edges_and_dirty_hours_from_the_base_table_merging_neighbours() -> None:
    start, end = T0 + timedelta(minutes=30), T0 + 10 * H + timedelta(minutes=15)
    filters = CostFilterParams(start_date=start, end_date=end)
    dirty = [T0, T0 + H, T0 + 4 * H, T0 + 5 * H, T0 + 9 * H, T0 + 11 * H]  # T0, T0+11h: outside the rollup part
    assert plan(filters, dirty) == HourPlan(
        T0 + H, T0 + 10 * H, ((start, T0 + 2 * H), (T0 + 4 * H, T0 + 6 * H), (T0 + 9 * H, end))
    )


def test_plan_gives_up_inside_one_hour_and_on_too_many_ranges() -> None:
    assert plan(CostFilterParams(start_date=T0 + timedelta(minutes=5), end_date=T0 + timedelta(minutes=50)), []) is None
    scattered = [T0 + 2 * i * H for i in range(MAX_BASE_RANGES + 1)]
    assert plan(CostFilterParams(), scattered) is None
    assert plan(CostFilterParams(), scattered[:-1]) is not None


def test_hourly_source_all_rollup() -> None:
    filters = CostFilterParams(organization_id="org-1", start_date=T0, end_date=T0 + 24 * H)
    source = hourly_source("costops", filters, HourPlan(T0, T0 + 24 * H, ()))
    assert source.sql == (
        f"({ROLLUP_SELECT} WHERE organization_id = {{organization_id:String}} AND requests > 0 "
        "AND hour >= {rollup_start:DateTime('UTC')} AND hour < {rollup_end:DateTime('UTC')})"
    )
    assert source.parameters == {"organization_id": "org-1", "rollup_start": T0, "rollup_end": T0 + 24 * H}


def test_hourly_source_with_a_dirty_hour_adds_the_base_table_for_it() -> None:
    filters = CostFilterParams(organization_id="org-1", provider="openai")
    source = hourly_source("costops", filters, HourPlan(None, None, ((T0, T0 + H),)))
    assert source.sql == (
        f"({ROLLUP_SELECT} WHERE organization_id = {{organization_id:String}} AND provider = {{provider:String}} "
        "AND requests > 0 AND NOT (hour >= {base_from_0:DateTime64(3, 'UTC')} "
        "AND hour < {base_to_0:DateTime64(3, 'UTC')}) "
        "UNION ALL SELECT organization_id, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, currency, provider, "
        f"model, project_id, {HOURLY_AGGREGATES} FROM costops.usage_costs FINAL "
        "WHERE organization_id = {organization_id:String} AND provider = {provider:String} AND "
        "((timestamp >= {base_from_0:DateTime64(3, 'UTC')} AND timestamp < {base_to_0:DateTime64(3, 'UTC')})) "
        "GROUP BY organization_id, hour, currency, provider, model, project_id)"
    )
    assert source.parameters == {
        "organization_id": "org-1",
        "provider": "openai",
        "base_from_0": T0,
        "base_to_0": T0 + H,
    }


SOURCE = Query("(S)", {"organization_id": "org-1"})


def test_aggregate_over_the_source() -> None:
    agg = AggregateParams(group_by=("provider", "model"), granularity="day", timezone="Europe/Paris")
    query = aggregate_query(SOURCE, agg)
    assert query.sql == (
        "SELECT toStartOfDay(hour, {timezone:String}) AS period_start, provider, model, currency, "
        "sum(total_cost) AS total_cost, sum(requests) AS request_count, sum(unpriced) AS unpriced_requests, "
        "sum(total_tokens) AS total_tokens, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens FROM (S) "
        "GROUP BY period_start, provider, model, currency ORDER BY period_start, provider, model, currency"
    )
    assert query.parameters == {"organization_id": "org-1", "timezone": "Europe/Paris"}
    assert SOURCE.parameters == {"organization_id": "org-1"}  # not mutated


def test_summary_and_trend_over_the_source() -> None:
    assert summary_query(SOURCE).sql == (
        "SELECT currency, provider, model, sum(total_cost) AS cost, sum(requests) AS requests, "
        "sum(unpriced) AS unpriced, sum(total_tokens) AS tokens FROM (S) "
        "GROUP BY GROUPING SETS ((currency), (currency, provider), (currency, model)) "
        "ORDER BY cost DESC, currency, provider, model"
    )
    trend = trend_query(SOURCE, SeriesParams(granularity="hour"), T0)
    assert trend.sql == (
        "SELECT toStartOfHour(hour) AS period_start, hour >= {split:DateTime('UTC')} AS current, "
        "sum(total_cost) AS cost, sum(requests) AS requests, sum(unpriced) AS unpriced, "
        "sum(total_tokens) AS tokens FROM (S) GROUP BY period_start, current ORDER BY period_start, current"
    )
    assert trend.parameters == {"organization_id": "org-1", "split": T0}


def test_dirty_hours_query() -> None:
    query = dirty_query("costops", "org-1", T0 + timedelta(minutes=10), T0 + 5 * H)
    assert query.sql == (
        "SELECT m.organization_id, m.hour, m.marked_at FROM costops.rollup_marks AS m FINAL "
        "LEFT JOIN (SELECT organization_id, hour, max(refreshed_through) AS refreshed_through "
        "FROM costops.rollup_refreshes WHERE organization_id = {organization_id:String} "
        "GROUP BY organization_id, hour) AS r ON m.organization_id = r.organization_id AND m.hour = r.hour "
        "WHERE m.marked_at > r.refreshed_through AND m.organization_id = {organization_id:String} "
        "AND m.hour >= {start:DateTime('UTC')} AND m.hour < {end:DateTime('UTC')} ORDER BY m.organization_id, m.hour"
    )
    assert query.parameters == {"organization_id": "org-1", "start": T0, "end": T0 + 5 * H}


def test_recompute_and_vacate_queries() -> None:
    hours = [T0 + 3 * H, T0]
    recompute = recompute_query("costops", "org-1", hours)
    assert recompute.sql == (
        "INSERT INTO costops.usage_costs_hourly (organization_id, hour, currency, provider, model, project_id, "
        "requests, unpriced, total_cost, priced_tokens, total_tokens, prompt_tokens, completion_tokens, "
        "cached_tokens, reasoning_tokens, latency_sum, latency_count, latency_p95, version) "
        "SELECT organization_id, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, currency, provider, model, "
        f"project_id, {HOURLY_AGGREGATES}, {{version:DateTime64(6, 'UTC')}} FROM costops.usage_costs FINAL "
        "WHERE organization_id = {organization_id:String} AND timestamp >= {start:DateTime64(3, 'UTC')} "
        "AND timestamp < {end:DateTime64(3, 'UTC')} AND toStartOfHour(timestamp) IN {hours:Array(DateTime('UTC'))} "
        "GROUP BY organization_id, hour, currency, provider, model, project_id"
    )
    assert recompute.parameters == {"organization_id": "org-1", "hours": hours, "start": T0, "end": T0 + 4 * H}
    vacate = vacate_query("costops", "org-1", hours)
    assert vacate.sql.endswith(
        "FROM costops.usage_costs_hourly FINAL WHERE organization_id = {organization_id:String} "
        "AND hour IN {hours:Array(DateTime('UTC'))} AND requests > 0 AND version < {version:DateTime64(6, 'UTC')}"
    )
    assert "0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0, latency_p95" in vacate.sql


def test_tombstone_query_copies_the_row_of_the_callers_organization() -> None:
    query = tombstone_query(
        "costops.usage_costs", "evt-1", CostFilterParams(organization_id="org-1"), ("event_id", "x")
    )
    assert query.sql == (
        "INSERT INTO costops.usage_costs (event_id, x, priced_at, deleted) "
        "SELECT event_id, x, {version:DateTime64(3, 'UTC')}, 1 FROM costops.usage_costs FINAL "
        "WHERE organization_id = {organization_id:String} AND event_id = {event_id:String}"
    )
    assert query.parameters == {"organization_id": "org-1", "event_id": "evt-1", "version": TOMBSTONE_VERSION}


def test_marks_of_are_the_distinct_organization_hours() -> None:
    stamps = [T0 + timedelta(minutes=m) for m in (1, 59, 61, 5)]
    table = pa.table(
        {
            "organization_id": pa.array(["a", "a", "a", "b"]).dictionary_encode(),
            "timestamp": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
        }
    )
    marks = marks_of(table).sort_by([("organization_id", "ascending"), ("hour", "ascending")]).to_pylist()
    assert marks == [
        {"organization_id": "a", "hour": T0},
        {"organization_id": "a", "hour": T0 + H},
        {"organization_id": "b", "hour": T0},
    ]
