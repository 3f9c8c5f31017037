"""The ``analytics`` endpoints' queries over ``usage_costs`` (read ``FINAL``, filtered by
:func:`sinks.queries.where_clause`, values bound): usage, costs, provider and model comparison.

Every money figure is grouped by currency. Each endpoint's parts are separate statements, so
while the sink writes, a total and its series may differ by the rows written in between.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.analytics import (
    CostAnalytics,
    CostPoint,
    CurrencyCosts,
    ModelComparison,
    ModelComparisons,
    ModelUsage,
    ProviderComparison,
    ProviderComparisons,
    ProviderUsage,
    RankedCost,
    SeriesParams,
    UsageAnalytics,
    UsagePoint,
    UsageTotals,
)
from schemas.period import period_series, zone_of
from schemas.priced import money
from schemas.query import CostFilterParams, as_utc
from sinks import rollup_queries as rollup
from sinks.queries import Query, StoreQueries, period_expression, where_clause

_ZERO = money(Decimal(0))
_TOKENS = "count() AS requests, sum(prompt_tokens), sum(completion_tokens), sum(total_tokens)"
_UNPRICED = "countIf(pricing_status = 'unpriced')"
_RANKED = {"project": ("project_id, NULL", "project_id"), "model": ("model, provider", "model, provider")}
"""(name and provider columns, grouping keys) of the ranked lists."""


def usage_totals_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    sql = f"SELECT {_TOKENS}, sum(cached_tokens), sum(reasoning_tokens) FROM {table} FINAL{where}"
    return Query(sql, params)


def usage_series_query(table: str, filters: CostFilterParams, series: SeriesParams) -> Query:
    where, params = where_clause(filters)
    period = period_expression(series.granularity, series.timezone, params)
    sql = (
        f"SELECT {period} AS period_start, {_TOKENS} FROM {table} FINAL{where} "
        "GROUP BY period_start ORDER BY period_start"
    )
    return Query(sql, params)


def usage_by_model_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    sql = (
        f"SELECT provider, model, {_TOKENS} FROM {table} FINAL{where} GROUP BY provider, model ORDER BY provider, model"
    )
    return Query(sql, params)


def cost_series_query(table: str, filters: CostFilterParams, series: SeriesParams) -> Query:
    where, params = where_clause(filters)
    period = period_expression(series.granularity, series.timezone, params)
    sql = (
        f"SELECT currency, {period} AS period_start, sum(total_cost), count(), {_UNPRICED} "
        f"FROM {table} FINAL{where} GROUP BY currency, period_start ORDER BY currency, period_start"
    )
    return Query(sql, params)


def top_costs_query(table: str, filters: CostFilterParams, series: SeriesParams, by: str) -> Query:
    """The ``series.limit`` costliest projects (``by="project"``) or models (``by="model"``) of
    each currency; only priced requests have a cost, ties broken by name."""
    where, params = where_clause(filters)
    select, keys = _RANKED[by]
    params["limit"] = series.limit
    sql = (
        f"SELECT currency, {select}, sum(total_cost) AS cost, count() FROM {table} FINAL{where} "
        f"GROUP BY currency, {keys} ORDER BY currency, cost DESC, {keys} LIMIT {{limit:UInt32}} BY currency"
    )
    return Query(sql, params)


def provider_comparison_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    sql = (
        f"SELECT provider, currency, count(), {_UNPRICED}, sum(total_tokens), sum(total_cost), "
        f"avg(latency_ms) FROM {table} FINAL{where} GROUP BY provider, currency ORDER BY provider, currency"
    )
    return Query(sql, params)


def model_comparison_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    sql = (
        f"SELECT provider, model, currency, count(), {_UNPRICED}, sum(total_tokens), sum(total_cost), "
        "sumIf(total_tokens, total_cost IS NOT NULL), avg(latency_ms), quantile(0.95)(latency_ms) "
        f"FROM {table} FINAL{where} GROUP BY provider, model, currency ORDER BY provider, model, currency"
    )
    return Query(sql, params)


def _money(value: Decimal | None) -> Decimal | None:
    return money(value) if value is not None else None


def _ratio(amount: Decimal | None, count: int, per: int = 1) -> Decimal | None:
    if amount is None or not count:
        return None
    return money(amount * per / count)


def _latency(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class AnalyticsQueries(StoreQueries):
    """Runs the analytics queries against a store."""

    def _periods(self, filters: CostFilterParams, series: SeriesParams) -> list[datetime]:
        """The periods to fill in: all of ``[start, end)`` when both dates are given."""
        if filters.start is None or filters.end is None:
            return []
        return period_series(filters.start, filters.end, series.granularity, zone_of(series.timezone))

    def usage(self, filters: CostFilterParams, series: SeriesParams) -> UsageAnalytics:
        source = self._source(filters, (), series.granularity, series.timezone)
        if source is None:
            totals_query = usage_totals_query(self._table, filters)
            series_query = usage_series_query(self._table, filters, series)
            by_model_query = usage_by_model_query(self._table, filters)
        else:
            totals_query = rollup.usage_totals_query(source)
            series_query = rollup.usage_series_query(source, series)
            by_model_query = rollup.usage_by_model_query(source)
        requests, prompt, completion, tokens, cached, reasoning = self._run(totals_query)[0]
        totals = UsageTotals(
            requests=requests,
            prompt_tokens=prompt or 0,
            completion_tokens=completion or 0,
            total_tokens=tokens or 0,
            cached_tokens=cached or 0,
            reasoning_tokens=reasoning or 0,
            avg_tokens_per_request=round((tokens or 0) / requests, 2) if requests else None,
        )
        zone = zone_of(series.timezone)
        points = {
            as_utc(period): UsagePoint(
                period_start=as_utc(period).astimezone(zone),
                requests=n,
                prompt_tokens=p or 0,
                completion_tokens=c or 0,
                total_tokens=t or 0,
            )
            for period, n, p, c, t in self._run(series_query)
        }
        for period in self._periods(filters, series):
            points.setdefault(
                period,
                UsagePoint(
                    period_start=period.astimezone(zone),
                    requests=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                    total_tokens=0,
                ),
            )
        by_model = [
            ModelUsage(
                provider=provider,
                model=model,
                requests=n,
                prompt_tokens=p or 0,
                completion_tokens=c or 0,
                total_tokens=t or 0,
            )
            for provider, model, n, p, c, t in self._run(by_model_query)
        ]
        providers: dict[str, ProviderUsage] = {}
        for item in by_model:
            into = providers.setdefault(
                item.provider,
                ProviderUsage(provider=item.provider, requests=0, prompt_tokens=0, completion_tokens=0, total_tokens=0),
            )
            into.requests += item.requests
            into.prompt_tokens += item.prompt_tokens
            into.completion_tokens += item.completion_tokens
            into.total_tokens += item.total_tokens
        return UsageAnalytics(
            granularity=series.granularity,
            timezone=series.timezone,
            totals=totals,
            series=[points[k] for k in sorted(points)],
            by_provider=list(providers.values()),
            by_model=by_model,
        )

    def costs(self, filters: CostFilterParams, series: SeriesParams) -> CostAnalytics:
        zone = zone_of(series.timezone)
        source = self._source(filters, (), series.granularity, series.timezone)
        points: dict[str, dict[datetime, CostPoint]] = defaultdict(dict)
        if source is None:
            series_query = cost_series_query(self._table, filters, series)
        else:
            series_query = rollup.cost_series_query(source, series)
        for currency, period, cost, requests, unpriced in self._run(series_query):
            points[currency][as_utc(period)] = CostPoint(
                period_start=as_utc(period).astimezone(zone),
                total_cost=_money(cost) or _ZERO,
                requests=requests,
                unpriced_requests=unpriced,
            )
        ranked: dict[tuple[str, str], list[RankedCost]] = defaultdict(list)
        for by in ("project", "model"):
            top = (
                top_costs_query(self._table, filters, series, by)
                if source is None
                else rollup.top_costs_query(source, series, by)
            )
            for currency, name, provider, cost, requests in self._run(top):
                ranked[currency, by].append(
                    RankedCost(name=name, provider=provider, total_cost=_money(cost) or _ZERO, requests=requests)
                )
        periods = self._periods(filters, series)
        currencies = []
        for currency in sorted(points):
            for period in periods:
                points[currency].setdefault(
                    period,
                    CostPoint(period_start=period.astimezone(zone), total_cost=_ZERO, requests=0, unpriced_requests=0),
                )
            line = [points[currency][k] for k in sorted(points[currency])]
            total = sum((p.total_cost for p in line), _ZERO)
            requests = sum(p.requests for p in line)
            unpriced = sum(p.unpriced_requests for p in line)
            currencies.append(
                CurrencyCosts(
                    currency=currency,
                    total_cost=total,
                    requests=requests,
                    unpriced_requests=unpriced,
                    avg_cost_per_request=_ratio(total, requests - unpriced),
                    series=line,
                    top_projects=ranked[currency, "project"],
                    top_models=ranked[currency, "model"],
                )
            )
        return CostAnalytics(granularity=series.granularity, timezone=series.timezone, currencies=currencies)

    def providers(self, filters: CostFilterParams) -> ProviderComparisons:
        source = self._source(filters)
        query = (
            provider_comparison_query(self._table, filters)
            if source is None
            else rollup.provider_comparison_query(source)
        )
        rows = self._run(query)
        return ProviderComparisons(
            data=[
                ProviderComparison(
                    provider=provider,
                    currency=currency,
                    requests=requests,
                    unpriced_requests=unpriced,
                    total_tokens=tokens or 0,
                    total_cost=_money(cost),
                    avg_cost_per_request=_ratio(cost, requests - unpriced),
                    avg_latency_ms=_latency(latency),
                )
                for provider, currency, requests, unpriced, tokens, cost, latency in rows
            ]
        )

    def models(self, filters: CostFilterParams) -> ModelComparisons:
        source = self._source(filters)
        query = (
            model_comparison_query(self._table, filters) if source is None else rollup.model_comparison_query(source)
        )
        rows = self._run(query)
        return ModelComparisons(
            data=[
                ModelComparison(
                    provider=provider,
                    model=model,
                    currency=currency,
                    requests=requests,
                    unpriced_requests=unpriced,
                    total_tokens=tokens or 0,
                    total_cost=_money(cost),
                    cost_per_1k_tokens=_ratio(cost, priced_tokens or 0, per=1000),
                    avg_latency_ms=_latency(latency),
                    p95_latency_ms=_latency(p95),
                )
                for provider, model, currency, requests, unpriced, tokens, cost, priced_tokens, latency, p95 in rows
            ]
        )
