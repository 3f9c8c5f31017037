"""``costs/trends``: a cost series and its period-over-period change, and the whole range
against the range of equal length before it, from one statement (one snapshot of the table)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.analytics import CostTrends, SeriesParams, TrendComparison, TrendPoint, TrendTotals
from schemas.period import bucket_start, period_series, zone_of
from schemas.priced import money
from schemas.query import CostFilterParams, as_utc
from sinks import rollup_queries as rollup
from sinks.queries import Query, StoreQueries, period_expression, where_clause

_ZERO = money(Decimal(0))
_Sums = tuple[Decimal, int, int, int]


def trend_query(table: str, filters: CostFilterParams, params: SeriesParams, split: datetime) -> Query:
    """Totals per period over the preceding range and the range itself (``filters`` spans
    both), split by which of the two each event is in (``current``): a period can straddle
    the boundary, and the overall comparison must cut at the instant, not the period."""
    where, bound = where_clause(filters)
    period = period_expression(params.granularity, params.timezone, bound)
    bound["split"] = split
    sql = (
        f"SELECT {period} AS period_start, timestamp >= {{split:DateTime64(3, 'UTC')}} AS current, "
        "sum(total_cost) AS cost, count() AS requests, countIf(pricing_status = 'unpriced') AS unpriced, "
        f"sum(total_tokens) AS tokens FROM {table} FINAL{where} "
        "GROUP BY period_start, current ORDER BY period_start, current"
    )
    return Query(sql, bound)


def trend_window(filters: CostFilterParams) -> tuple[CostFilterParams, datetime, datetime, datetime]:
    """(filters over both ranges in one currency, previous start, start, end)."""
    start, end = filters.start, filters.end
    assert start is not None and end is not None, "the route requires both dates"
    previous = start - (end - start)
    both = filters.model_copy(update={"start_date": previous, "end_date": end, "currency": filters.currency or "USD"})
    return both, previous, start, end


def percent(change: Decimal, base: Decimal) -> float | None:
    return float((change * 100 / base).quantize(Decimal("0.01"))) if base else None


class TrendQueries(StoreQueries):
    """Runs the trend query against a store (from the rollup when the range's bounds are whole hours)."""

    def trends(self, filters: CostFilterParams, params: SeriesParams) -> CostTrends:
        both, previous_start, start, end = trend_window(filters)
        source = None
        # The split must be a whole hour: the rollup cannot tell the events of an hour apart.
        if rollup.split_on_hour(start) and rollup.split_on_hour(end):
            source = self._source(both, (), params.granularity, params.timezone)
        query = (
            trend_query(self._table, both, params, start)
            if source is None
            else rollup.trend_query(source, params, start)
        )
        current: dict[datetime, _Sums] = {}
        earlier: dict[datetime, _Sums] = {}
        for period, is_current, cost, requests, unpriced, tokens in self._run(query):
            (current if is_current else earlier)[as_utc(period)] = (cost or _ZERO, requests, unpriced, tokens or 0)
        zone = zone_of(params.timezone)
        periods = period_series(start, end, params.granularity, zone)
        empty: _Sums = (_ZERO, 0, 0, 0)
        before = bucket_start(periods[0] - timedelta(milliseconds=1), params.granularity, zone)
        last_cost = earlier.get(before, empty)[0]
        points = []
        for period in periods:
            cost, requests, unpriced, tokens = current.get(period, empty)
            change = cost - last_cost
            points.append(
                TrendPoint(
                    period_start=period.astimezone(zone),
                    total_cost=money(cost),
                    requests=requests,
                    unpriced_requests=unpriced,
                    total_tokens=tokens,
                    change=money(change),
                    change_percent=percent(change, last_cost),
                )
            )
            last_cost = cost
        now = _totals(current.values(), start, end)
        then = _totals(earlier.values(), previous_start, start)
        overall = TrendComparison(
            current=now,
            previous=then,
            change=money(now.total_cost - then.total_cost),
            change_percent=percent(now.total_cost - then.total_cost, then.total_cost),
            requests_change=now.requests - then.requests,
            tokens_change=now.total_tokens - then.total_tokens,
        )
        return CostTrends(
            granularity=params.granularity,
            timezone=params.timezone,
            currency=both.currency or "USD",
            data=points,
            overall=overall,
        )


def _totals(sums: Any, start: datetime, end: datetime) -> TrendTotals:
    rows: list[_Sums] = list(sums)
    return TrendTotals(
        start=start,
        end=end,
        total_cost=money(sum((r[0] for r in rows), _ZERO)),
        requests=sum(r[1] for r in rows),
        unpriced_requests=sum(r[2] for r in rows),
        total_tokens=sum(r[3] for r in rows),
    )
