"""Golden SQL of the trend and analytics builders (sinks/trend_queries.py, sinks/analytics_queries.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.analytics import SeriesParams
from schemas.query import CostFilterParams
from sinks.analytics_queries import (
    cost_series_query,
    model_comparison_query,
    provider_comparison_query,
    top_costs_query,
    usage_by_model_query,
    usage_series_query,
    usage_totals_query,
)
from sinks.queries import Query
from sinks.trend_queries import percent, trend_query, trend_window

TABLE = "costops.usage_costs"
ORG = CostFilterParams(organization_id="org-1")
WHERE = " WHERE organization_id = {organization_id:String}"
TOKENS = "count() AS requests, sum(prompt_tokens), sum(completion_tokens), sum(total_tokens)"


def test_trend_query_splits_at_the_range_start() -> None:
    split = datetime(2025, 1, 4, tzinfo=UTC)
    query = trend_query(TABLE, ORG, SeriesParams(timezone="Asia/Tokyo"), split)
    assert query == Query(
        "SELECT toStartOfDay(timestamp, {timezone:String}) AS period_start,"
        " timestamp >= {split:DateTime64(3, 'UTC')} AS current, sum(total_cost) AS cost, count() AS requests,"
        " countIf(pricing_status = 'unpriced') AS unpriced, sum(total_tokens) AS tokens"
        f" FROM {TABLE} FINAL{WHERE} GROUP BY period_start, current ORDER BY period_start, current",
        {"organization_id": "org-1", "timezone": "Asia/Tokyo", "split": split},
    )


def test_trend_window_is_the_range_and_the_one_before_in_one_currency() -> None:
    filters = CostFilterParams.model_validate({"start_date": "2025-01-04", "end_date": "2025-01-06"})
    both, previous, start, end = trend_window(filters)
    assert (previous, start, end) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 1, 4, tzinfo=UTC),
        datetime(2025, 1, 7, tzinfo=UTC),
    )
    assert (both.start, both.end, both.currency) == (previous, end, "USD")


def test_percent_is_null_on_a_zero_base() -> None:
    from decimal import Decimal

    assert percent(Decimal(3), Decimal(2)) == 150.0
    assert percent(Decimal(-1), Decimal(3)) == -33.33
    assert percent(Decimal(1), Decimal(0)) is None


def test_usage_queries() -> None:
    assert usage_totals_query(TABLE, ORG) == Query(
        f"SELECT {TOKENS}, sum(cached_tokens), sum(reasoning_tokens) FROM {TABLE} FINAL{WHERE}",
        {"organization_id": "org-1"},
    )
    assert usage_series_query(TABLE, ORG, SeriesParams(granularity="hour")) == Query(
        f"SELECT toStartOfHour(timestamp) AS period_start, {TOKENS} FROM {TABLE} FINAL{WHERE}"
        " GROUP BY period_start ORDER BY period_start",
        {"organization_id": "org-1"},
    )
    assert usage_by_model_query(TABLE, ORG).sql == (
        f"SELECT provider, model, {TOKENS} FROM {TABLE} FINAL{WHERE} GROUP BY provider, model ORDER BY provider, model"
    )


def test_cost_queries_are_split_by_currency() -> None:
    assert cost_series_query(TABLE, ORG, SeriesParams()).sql == (
        "SELECT currency, toStartOfDay(timestamp) AS period_start, sum(total_cost), count(),"
        f" countIf(pricing_status = 'unpriced') FROM {TABLE} FINAL{WHERE}"
        " GROUP BY currency, period_start ORDER BY currency, period_start"
    )
    assert top_costs_query(TABLE, ORG, SeriesParams(limit=3), "project") == Query(
        f"SELECT currency, project_id, NULL, sum(total_cost) AS cost, count() FROM {TABLE} FINAL{WHERE}"
        " GROUP BY currency, project_id ORDER BY currency, cost DESC, project_id LIMIT {limit:UInt32} BY currency",
        {"organization_id": "org-1", "limit": 3},
    )
    assert top_costs_query(TABLE, ORG, SeriesParams(), "model").sql == (
        f"SELECT currency, model, provider, sum(total_cost) AS cost, count() FROM {TABLE} FINAL{WHERE}"
        " GROUP BY currency, model, provider ORDER BY currency, cost DESC, model, provider"
        " LIMIT {limit:UInt32} BY currency"
    )


def test_comparison_queries() -> None:
    assert provider_comparison_query(TABLE, ORG).sql == (
        "SELECT provider, currency, count(), countIf(pricing_status = 'unpriced'), sum(total_tokens),"
        f" sum(total_cost), avg(latency_ms) FROM {TABLE} FINAL{WHERE}"
        " GROUP BY provider, currency ORDER BY provider, currency"
    )
    assert model_comparison_query(TABLE, ORG).sql == (
        "SELECT provider, model, currency, count(), countIf(pricing_status = 'unpriced'), sum(total_tokens),"
        " sum(total_cost), sumIf(total_tokens, total_cost IS NOT NULL), avg(latency_ms),"
        f" quantile(0.95)(latency_ms) FROM {TABLE} FINAL{WHERE}"
        " GROUP BY provider, model, currency ORDER BY provider, model, currency"
    )
