"""Parameterised cost queries over ``usage_costs``: builders (pure, tested as golden SQL) and
:class:`CostQueries`, which runs them.

Every query reads ``FINAL``: the table may still hold unmerged copies of a replayed event,
and FINAL collapses them at read time, so no aggregate ever counts an event twice.
Values are bound server-side (``{name:Type}``); only whitelisted identifiers are spliced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from schemas.priced import COST_PLACES, pricing_not_found
from schemas.query import (
    AggregateParams,
    Breakdown,
    CostAggregate,
    CostDetail,
    CostFilterParams,
    CostGroup,
    CostPage,
    CostRecord,
    CostSummary,
    Freshness,
    MissingPrice,
    MissingPrices,
    PageParams,
    Period,
    PricingError,
    UsageStats,
)
from sinks.store import ClickHouseStore

_FILTER_COLUMNS = ("organization_id", "project_id", "provider", "model", "currency")
_GRANULARITY_FN = {"hour": "toStartOfHour", "day": "toStartOfDay"}
_RECORD_COLUMNS = tuple(CostRecord.model_fields)
_SELECT_RECORD = ", ".join("event_id AS id" if c == "id" else c for c in _RECORD_COLUMNS)
_DETAIL_COLUMNS = tuple(c for c in CostDetail.model_fields if c != "error")
_SELECT_DETAIL = ", ".join("event_id AS id" if c == "id" else c for c in _DETAIL_COLUMNS)


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: dict[str, Any]


def where_clause(filters: CostFilterParams) -> tuple[str, dict[str, Any]]:
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for column in _FILTER_COLUMNS:
        value = getattr(filters, column)
        if value is not None:
            conditions.append(f"{column} = {{{column}:String}}")
            params[column] = value
    if filters.start is not None:
        conditions.append("timestamp >= {start:DateTime64(3, 'UTC')}")
        params["start"] = filters.start
    if filters.end is not None:
        conditions.append("timestamp < {end:DateTime64(3, 'UTC')}")
        params["end"] = filters.end
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", params


def list_query(table: str, filters: CostFilterParams, page: PageParams) -> Query:
    """One page plus the total in the same statement (``count() OVER ()``), so the two agree
    even while the sink writes."""
    where, params = where_clause(filters)
    params.update(limit=page.per_page, offset=(page.page - 1) * page.per_page)
    sql = (
        f"SELECT {_SELECT_RECORD}, count() OVER () AS total FROM {table} FINAL{where} "
        "ORDER BY timestamp DESC, organization_id, event_id "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    return Query(sql, params)


def count_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    return Query(f"SELECT count() FROM {table} FINAL{where}", params)


_TOTALS = (
    "sum(total_cost) AS total_cost, count() AS request_count, "
    "countIf(pricing_status = 'unpriced') AS unpriced_requests, sum(total_tokens) AS total_tokens, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)


def aggregate_query(table: str, filters: CostFilterParams, agg: AggregateParams) -> Query:
    where, params = where_clause(filters)
    keys: list[str] = [*agg.group_by, "currency"]  # never add amounts of different currencies
    if agg.granularity is not None:
        keys.insert(0, f"{_GRANULARITY_FN[agg.granularity]}(timestamp) AS period_start")
    names = [k.split(" AS ")[-1] for k in keys]
    select = ", ".join([*keys, _TOTALS])
    group = f" GROUP BY {', '.join(names)} ORDER BY {', '.join(names)}"
    return Query(f"SELECT {select} FROM {table} FINAL{where}{group}", params)


def summary_query(table: str, filters: CostFilterParams) -> Query:
    """Totals, by provider and by model in one statement (one snapshot of the table).

    Grouping sets fill the columns a set does not group by with ''; provider and model are
    never empty, so (c, '', '') is the total of currency c, (c, p, '') a provider, (c, '', m)
    a model. Every set keeps the currency: amounts of different currencies are never added.
    """
    where, params = where_clause(filters)
    sql = (
        "SELECT currency, provider, model, sum(total_cost) AS cost, count() AS requests, "
        "countIf(pricing_status = 'unpriced') AS unpriced, sum(total_tokens) AS tokens "
        f"FROM {table} FINAL{where} "
        "GROUP BY GROUPING SETS ((currency), (currency, provider), (currency, model)) "
        "ORDER BY cost DESC, currency, provider, model"
    )
    return Query(sql, params)


def detail_query(table: str, event_id: str, organization_id: str | None = None) -> Query:
    """One event by id; with ``organization_id``, only if it belongs to that organization."""
    params: dict[str, Any] = {"event_id": event_id}
    where = "event_id = {event_id:String}"
    if organization_id is not None:
        where += " AND organization_id = {organization_id:String}"
        params["organization_id"] = organization_id
    return Query(f"SELECT {_SELECT_DETAIL} FROM {table} FINAL WHERE {where} LIMIT 1", params)


def missing_query(table: str, filters: CostFilterParams, limit: int) -> Query:
    """Unpriced events by provider, model and organization, most events first."""
    where, params = where_clause(filters)
    where = f"{where} AND" if where else " WHERE"
    params["limit"] = limit
    sql = (
        "SELECT provider, model, organization_id, count() AS events, sum(total_tokens), min(timestamp), "
        f"max(timestamp), count() OVER () FROM {table} FINAL{where} pricing_status = 'unpriced' "
        "GROUP BY provider, model, organization_id ORDER BY events DESC, provider, model, organization_id "
        "LIMIT {limit:UInt32}"
    )
    return Query(sql, params)


def stats_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    lag = "toUnixTimestamp64Milli(written_at) - toUnixTimestamp64Milli(ingested_at)"
    sql = (
        "SELECT count(), countIf(pricing_status = 'unpriced'), sum(total_tokens), min(timestamp), max(timestamp), "
        f"quantileExact(0.5)({lag}), quantileExact(0.99)({lag}), max({lag}) FROM {table} FINAL{where}"
    )
    return Query(sql, params)


def _money(value: Decimal | None) -> Decimal:
    return (value if value is not None else Decimal(0)).quantize(COST_PLACES)


def _money_or_none(value: Decimal | None) -> Decimal | None:
    return value.quantize(COST_PLACES) if value is not None else None


class CostQueries:
    """Runs the cost queries against a store.

    Args:
        store: the ClickHouse store.
    """

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store
        self._table = store.table("usage_costs")

    def _run(self, query: Query) -> list[tuple[Any, ...]]:
        return self._store.query(query.sql, query.parameters)

    def list_costs(self, filters: CostFilterParams, page: PageParams) -> CostPage:
        rows = self._run(list_query(self._table, filters, page))
        # Past the last page there is no row to carry the total: count it separately.
        total = rows[0][-1] if rows else self._run(count_query(self._table, filters))[0][0]
        records = [CostRecord(**dict(zip(_RECORD_COLUMNS, row[:-1], strict=True))) for row in rows]
        offset = (page.page - 1) * page.per_page
        return CostPage(
            data=records,
            page=page.page,
            per_page=page.per_page,
            total=total,
            has_more=offset + len(rows) < total,
        )

    def aggregate(self, filters: CostFilterParams, agg: AggregateParams) -> CostAggregate:
        rows = self._run(aggregate_query(self._table, filters, agg))
        names = (["period_start"] if agg.granularity else []) + [*agg.group_by, "currency"]
        groups = []
        for row in rows:
            keys = dict(zip(names, row[: len(names)], strict=True))
            total_cost, requests, unpriced, tokens, prompt, completion = row[len(names) :]
            groups.append(
                CostGroup(
                    **keys,
                    total_cost=_money_or_none(total_cost),
                    request_count=requests,
                    unpriced_requests=unpriced,
                    total_tokens=tokens or 0,
                    prompt_tokens=prompt or 0,
                    completion_tokens=completion or 0,
                )
            )
        return CostAggregate(group_by=list(agg.group_by), granularity=agg.granularity, data=groups)

    def stats(self, filters: CostFilterParams) -> UsageStats:
        events, unpriced, tokens, first, last, p50, p99, worst = self._run(stats_query(self._table, filters))[0]
        return UsageStats(
            events=events,
            priced_requests=events - unpriced,
            unpriced_requests=unpriced,
            total_tokens=tokens or 0,
            first_event=first if events else None,
            last_event=last if events else None,
            freshness=Freshness(p50_ms=p50, p99_ms=p99, max_ms=worst) if events else None,
        )

    def summary(self, filters: CostFilterParams) -> CostSummary:
        currency = filters.currency or "USD"
        total_cost, requests, unpriced, tokens = _money(None), 0, 0, 0
        currency_priced = 0
        by_provider: list[Breakdown] = []
        by_model: list[Breakdown] = []
        others: list[Breakdown] = []
        for cur, provider, model, cost, count, unpriced_count, token_sum in self._run(
            summary_query(self._table, filters)
        ):
            if not provider and not model:  # the total of one currency
                requests, unpriced, tokens = requests + count, unpriced + unpriced_count, tokens + (token_sum or 0)
                if cur == currency:
                    total_cost, currency_priced = _money(cost), count - unpriced_count
                else:
                    others.append(
                        Breakdown(
                            name=cur,
                            currency=cur,
                            total_cost=_money_or_none(cost),
                            requests=count,
                            unpriced_requests=unpriced_count,
                        )
                    )
                continue
            item = Breakdown(
                name=provider or model,
                currency=cur,
                total_cost=_money_or_none(cost),
                requests=count,
                unpriced_requests=unpriced_count,
            )
            (by_provider if provider else by_model).append(item)
        avg = (total_cost / currency_priced).quantize(COST_PLACES, ROUND_HALF_EVEN) if currency_priced else _money(None)
        return CostSummary(
            period=Period(start=filters.start, end=filters.end),
            organization_id=filters.organization_id,
            total_cost=total_cost,
            total_requests=requests,
            priced_requests=requests - unpriced,
            unpriced_requests=unpriced,
            avg_cost_per_request=avg,
            total_tokens=tokens,
            currency=currency,
            by_provider=by_provider,
            by_model=by_model,
            other_currencies=others,
        )

    def detail(self, event_id: str, organization_id: str | None = None) -> CostDetail | None:
        rows = self._run(detail_query(self._table, event_id, organization_id))
        if not rows:
            return None
        values = dict(zip(_DETAIL_COLUMNS, rows[0], strict=True))
        values["price_rates"] = json.loads(values["price_rates"]) if values["price_rates"] else None
        values["metadata"] = dict(values["metadata"] or {})
        if values["pricing_status"] == "unpriced":
            values["error"] = PricingError(message=values["unpriced_reason"] or "Pricing table not found")
        return CostDetail(**values)

    def missing(self, filters: CostFilterParams, limit: int = 1000) -> MissingPrices:
        rows = self._run(missing_query(self._table, filters, limit))
        data = [
            MissingPrice(
                provider=provider,
                model=model,
                organization_id=org,
                events=events,
                total_tokens=tokens or 0,
                first_seen=first,
                last_seen=last,
                error=PricingError(message=pricing_not_found(provider, model, last.date())),
            )
            for provider, model, org, events, tokens, first, last, _ in rows
        ]
        return MissingPrices(data=data, total=rows[0][-1] if rows else 0)
