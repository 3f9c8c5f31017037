"""Parameterised cost queries over ``usage_costs``: builders (pure, tested as golden SQL) and
:class:`CostQueries`, which runs them.

Every query reads ``FINAL``: the table may still hold unmerged copies of a replayed event,
and FINAL collapses them at read time, so no aggregate ever counts an event twice.
Values are bound server-side (``{name:Type}``); only whitelisted identifiers are spliced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.cursor import encode_cursor
from schemas.period import Granularity, period_series, zone_of
from schemas.priced import money, pricing_not_found
from schemas.query import (
    GROUP_COLUMNS,
    METADATA_PREFIX,
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
    SortKey,
    UsagePage,
    UsageRecord,
    UsageStats,
    as_utc,
)
from sinks.store import ClickHouseStore

_FILTER_COLUMNS = ("organization_id", "project_id", "user_id", "provider", "model", "currency")
_GRANULARITY_FN = {
    "minute": "toStartOfMinute",
    "hour": "toStartOfHour",
    "day": "toStartOfDay",
    "week": "toStartOfWeek",
    "month": "toStartOfMonth",
}
_RECORD_COLUMNS = tuple(CostRecord.model_fields)
_SELECT_RECORD = ", ".join("event_id AS id" if c == "id" else c for c in _RECORD_COLUMNS)
_USAGE_COLUMNS = tuple(UsageRecord.model_fields)
_SELECT_USAGE = ", ".join("event_id AS id" if c == "id" else c for c in _USAGE_COLUMNS)
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
    if filters.tags:
        conditions.append("hasAll(tags, {tags:Array(String)})")
        params["tags"] = list(filters.tags)
    # Values are required non-empty: a missing key reads as '' and must never match.
    for index, key in enumerate(sorted(filters.metadata)):
        conditions.append(f"metadata[{{metadata_key_{index}:String}}] = {{metadata_value_{index}:String}}")
        params[f"metadata_key_{index}"] = key
        params[f"metadata_value_{index}"] = filters.metadata[key]
    if filters.start is not None:
        conditions.append("timestamp >= {start:DateTime64(3, 'UTC')}")
        params["start"] = filters.start
    if filters.end is not None:
        conditions.append("timestamp < {end:DateTime64(3, 'UTC')}")
        params["end"] = filters.end
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", params


def list_query(table: str, filters: CostFilterParams, page: PageParams, select: str = _SELECT_RECORD) -> Query:
    """One page plus the total in the same statement (``count() OVER ()``), so the two agree
    even while the sink writes.

    With a cursor (``page.after``) the page is the rows after that sort key (keyset paging) and
    the count is of the rows from there on. The order is newest first but organization and id
    ascending, so "after" is not one tuple comparison: it is an older timestamp, or the same
    timestamp and a greater (organization_id, event_id). Rows written meanwhile cannot shift a
    keyset page: a newer one sorts before the cursor and is not returned, an older one after it
    and is returned once.
    """
    where, params = where_clause(filters)
    offset = (page.page - 1) * page.per_page
    if page.after is not None:
        where = after_clause(where, params, page.after)
        offset = 0
    params.update(limit=page.per_page, offset=offset)
    sql = (
        f"SELECT {select}, count() OVER () AS total FROM {table} FINAL{where} "
        "ORDER BY timestamp DESC, organization_id, event_id "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    return Query(sql, params)


def after_clause(where: str, params: dict[str, Any], after: SortKey) -> str:
    """``where`` narrowed to the rows after ``after`` in the list order (newest first, then
    organization and id ascending), its values bound into ``params``."""
    params.update(
        after_timestamp=after.timestamp, after_organization_id=after.organization_id, after_event_id=after.event_id
    )
    return (f"{where} AND" if where else " WHERE") + (
        " (timestamp < {after_timestamp:DateTime64(3, 'UTC')}"
        " OR (timestamp = {after_timestamp:DateTime64(3, 'UTC')}"
        " AND (organization_id, event_id) > ({after_organization_id:String}, {after_event_id:String})))"
    )


def count_query(table: str, filters: CostFilterParams) -> Query:
    where, params = where_clause(filters)
    return Query(f"SELECT count() FROM {table} FINAL{where}", params)


_TOTALS = (
    "sum(total_cost) AS total_cost, count() AS request_count, "
    "countIf(pricing_status = 'unpriced') AS unpriced_requests, sum(total_tokens) AS total_tokens, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)


def period_expression(
    granularity: Granularity, timezone: str, params: dict[str, Any], column: str = "timestamp"
) -> str:
    """The start of an event's period in ``timezone`` (bound as ``{timezone:String}``).

    In UTC, minutes, hours and days need no zone argument: the column's zone is UTC. Weeks
    (starting Monday: mode 1) and months are Dates in ClickHouse, turned back into the instant
    of that local midnight. ``column``: ``timestamp``, or ``hour`` over the hourly rollup."""
    if column not in ("timestamp", "hour"):
        raise ValueError(f"no time column {column!r}")
    function = _GRANULARITY_FN[granularity]
    if timezone == "UTC" and granularity in ("minute", "hour", "day"):
        return f"{function}({column})"
    params["timezone"] = timezone
    zone = "{timezone:String}"
    if granularity == "week":
        return f"toDateTime(toStartOfWeek({column}, 1, {zone}), {zone})"
    if granularity == "month":
        return f"toDateTime(toStartOfMonth({column}, {zone}), {zone})"
    return f"{function}({column}, {zone})"


def group_expression(key: str, index: int, params: dict[str, Any]) -> tuple[str, str]:
    """(expression, alias) of one ``group_by`` key, already checked against the whitelist.

    ``tag``: one row per distinct tag of the event (arrayJoin), so an event with two tags is in
    two groups; an untagged event has the tag '' (reported as null). ``metadata.KEY``: the
    value under KEY, bound as a parameter; '' (reported as null) when the event lacks the key."""
    if key == "tag":
        return "arrayJoin(if(empty(tags), [''], arrayDistinct(tags)))", "tag"
    if key.startswith(METADATA_PREFIX):
        params[f"group_key_{index}"] = key.removeprefix(METADATA_PREFIX)
        return f"metadata[{{group_key_{index}:String}}]", f"group_{index}"
    if key not in GROUP_COLUMNS:  # AggregateParams validated it; this guards the splice
        raise ValueError(f"cannot group by {key!r}")
    return key, key


def aggregate_query(table: str, filters: CostFilterParams, agg: AggregateParams) -> Query:
    where, params = where_clause(filters)
    keys: list[tuple[str, str]] = [group_expression(k, i, params) for i, k in enumerate(agg.group_by)]
    keys.append(("currency", "currency"))  # never add amounts of different currencies
    if agg.granularity is not None:
        keys.insert(0, (period_expression(agg.granularity, agg.timezone, params), "period_start"))
    names = [alias for _, alias in keys]
    select = ", ".join([*(expr if expr == alias else f"{expr} AS {alias}" for expr, alias in keys), _TOTALS])
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


def detail_query(table: str, event_id: str, filters: CostFilterParams, select: str = _SELECT_DETAIL) -> Query:
    """One event, if it matches ``filters`` too (the caller's organization above all)."""
    where, params = where_clause(filters)
    where = f"{where} AND" if where else " WHERE"
    params["event_id"] = event_id
    sql = f"SELECT {select} FROM {table} FINAL{where} event_id = {{event_id:String}} LIMIT 1"
    return Query(sql, params)


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


def _fill(
    groups: list[CostGroup], periods: list[datetime], keys: list[str], filters: CostFilterParams
) -> list[CostGroup]:
    """``groups`` plus a zero group for each period a series (group and currency) lacks, in
    period then key order."""
    present = {(g.period_start, _key(g, keys)) for g in groups}
    series = {_key(g, keys) for g in groups}
    if not series and keys == ["currency"]:
        series = {(filters.currency or "USD",)}
    zero = money(Decimal(0))
    filled = list(groups)
    for period in periods:
        for key in series:
            if (period, key) not in present:
                values = dict(zip(keys, key, strict=True))
                filled.append(
                    CostGroup(
                        period_start=period,
                        total_cost=zero,
                        request_count=0,
                        unpriced_requests=0,
                        total_tokens=0,
                        prompt_tokens=0,
                        completion_tokens=0,
                        **values,
                    )
                )
    return sorted(filled, key=lambda g: (g.period_start, [(v is None, v or "") for v in _key(g, keys)]))


def _key(group: CostGroup, keys: list[str]) -> tuple[Any, ...]:
    values = {"currency": group.currency, **(group.model_extra or {})}
    return tuple(values.get(k) for k in keys)


def _usage_record(row: tuple[Any, ...]) -> UsageRecord:
    values = dict(zip(_USAGE_COLUMNS, row, strict=True))
    values["metadata"] = dict(values["metadata"] or {})
    return UsageRecord(**values)


def _money(value: Decimal | None) -> Decimal:
    return money(value if value is not None else Decimal(0))


def _money_or_none(value: Decimal | None) -> Decimal | None:
    return money(value) if value is not None else None


class StoreQueries:
    """Queries over one store's ``usage_costs``: the base of the cost, analytics and trend queries.

    Args:
        store: the ClickHouse store.
        rollups: answer aggregates from the hourly rollup where it holds them (same answers, faster).
    """

    def __init__(self, store: ClickHouseStore, rollups: bool = False) -> None:
        self._store = store
        self._table = store.table("usage_costs")
        self._rollups = rollups

    def _run(self, query: Query) -> list[tuple[Any, ...]]:
        return self._store.query(query.sql, query.parameters)

    def _source(
        self,
        filters: CostFilterParams,
        group_by: tuple[str, ...] = (),
        granularity: Granularity | None = None,
        timezone: str = "UTC",
    ) -> Query | None:
        """The rollup-backed source of an aggregate, or None to read the base table."""
        if not self._rollups:
            return None
        # sinks.rollup_queries builds on this module, hence imported here.
        from sinks.rollup_queries import rollup_source

        return rollup_source(self._store, filters, group_by, granularity, timezone)


class CostQueries(StoreQueries):
    """Runs the cost queries (lists, aggregates, summaries) against a store."""

    def list_costs(self, filters: CostFilterParams, page: PageParams) -> CostPage:
        rows, total, has_more, cursor = self._page(filters, page, _RECORD_COLUMNS)
        records = [CostRecord(**dict(zip(_RECORD_COLUMNS, row[:-1], strict=True))) for row in rows]
        return CostPage(data=records, page=page.page, per_page=page.per_page, total=total, has_more=has_more,
                        next_cursor=cursor)  # fmt: skip

    def list_usage(self, filters: CostFilterParams, page: PageParams) -> UsagePage:
        rows, total, has_more, cursor = self._page(filters, page, _USAGE_COLUMNS)
        records = [_usage_record(row[:-1]) for row in rows]
        return UsagePage(data=records, page=page.page, per_page=page.per_page, total=total, has_more=has_more,
                         next_cursor=cursor)  # fmt: skip

    def usage(self, event_id: str, filters: CostFilterParams) -> UsageRecord | None:
        rows = self._run(detail_query(self._table, event_id, filters, _SELECT_USAGE))
        return _usage_record(rows[0]) if rows else None

    def _page(
        self, filters: CostFilterParams, page: PageParams, columns: tuple[str, ...]
    ) -> tuple[list[tuple[Any, ...]], int, bool, str | None]:
        """(rows, total, has_more, next_cursor) of one page of ``columns``; each row ends with
        its window count."""
        select = ", ".join("event_id AS id" if c == "id" else c for c in columns)
        rows = self._run(list_query(self._table, filters, page, select))
        if page.after is None:
            # Past the last page there is no row to carry the total: count it separately.
            total = rows[0][-1] if rows else self._run(count_query(self._table, filters))[0][0]
            has_more = (page.page - 1) * page.per_page + len(rows) < total
        else:
            # The window counted the rows from the cursor on; the total is of all that match.
            has_more = bool(rows) and len(rows) < rows[0][-1]
            total = self._run(count_query(self._table, filters))[0][0]
        cursor = None
        if has_more:
            last = dict(zip(columns, rows[-1], strict=False))
            key = SortKey(timestamp=last["timestamp"], organization_id=last["organization_id"], event_id=last["id"])
            cursor = encode_cursor(key)
        return rows, total, has_more, cursor

    def aggregate(self, filters: CostFilterParams, agg: AggregateParams) -> CostAggregate:
        """Totals per group (and period). With ``fill_gaps``, a granularity and both dates, every period of
        ``[start, end)`` is present for every group (and currency) that has events in the range:
        the periods without events have zero totals. Groups are never invented: with no event at
        all, a grouped answer is empty and an ungrouped one is a zero series in the ``currency``
        filter's currency (else USD)."""
        from sinks import rollup_queries

        source = self._source(filters, agg.group_by, agg.granularity, agg.timezone)
        query = (
            aggregate_query(self._table, filters, agg)
            if source is None
            else rollup_queries.aggregate_query(source, agg)
        )
        rows = self._run(query)
        zone = zone_of(agg.timezone)
        names = (["period_start"] if agg.granularity else []) + [*agg.group_by, "currency"]
        groups = []
        for row in rows:
            keys = dict(zip(names, row[: len(names)], strict=True))
            for key in agg.group_by:
                if key == "tag" or key.startswith(METADATA_PREFIX):
                    keys[key] = keys[key] or None  # '' is "no tag" / "no such key"
            if agg.granularity:
                keys["period_start"] = as_utc(keys["period_start"]).astimezone(zone)
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
        if agg.fill_gaps and agg.granularity and filters.start is not None and filters.end is not None:
            series = period_series(filters.start, filters.end, agg.granularity, zone)
            groups = _fill(groups, [p.astimezone(zone) for p in series], [*agg.group_by, "currency"], filters)
        return CostAggregate(
            group_by=list(agg.group_by), granularity=agg.granularity, timezone=agg.timezone, data=groups
        )

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
        from sinks import rollup_queries

        source = self._source(filters)
        query = summary_query(self._table, filters) if source is None else rollup_queries.summary_query(source)
        for cur, provider, model, cost, count, unpriced_count, token_sum in self._run(query):
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
        avg = money(total_cost / currency_priced) if currency_priced else _money(None)
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

    def detail(self, event_id: str, filters: CostFilterParams) -> CostDetail | None:
        rows = self._run(detail_query(self._table, event_id, filters))
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
