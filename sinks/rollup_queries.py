"""Aggregate queries over the hourly rollup: when a query may use it, and the SQL it runs.

A rollup-backed query reads an *hourly source*: ``usage_costs_hourly FINAL`` for the clean
whole hours of the range, ``UNION ALL`` the same measures computed from ``usage_costs FINAL``
(grouped by hour) for the dirty hours and the partial hours at the edges of the range. Each
outer query then adds the hourly measures up (a count becomes ``sum(requests)``, an average
``sum(latency_sum) / sum(latency_count)``, a p95 ``quantileMerge`` of the hourly states).

A query can use it when nothing it filters or groups by is finer than the rollup: no
``user_id``, tag or metadata filter or group, and periods of an hour or more whose
boundaries are whole UTC hours (UTC, or a zone whose offset over the range is whole hours).
Otherwise :func:`plan` answers None and the caller reads ``usage_costs`` as before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.analytics import SeriesParams
from schemas.period import Granularity, zone_of
from schemas.query import AggregateParams, CostFilterParams
from sinks.queries import Query, period_expression, where_clause
from sinks.rollup import HOUR, HOURLY_AGGREGATES, HOURLY_KEYS, dirty_hours, hour_of
from sinks.store import ClickHouseStore

ROLLUP_GROUPS = frozenset({"provider", "model", "organization_id", "project_id"})
MAX_BASE_RANGES = 64
"""More separate dirty ranges than this and the whole query reads the base table."""
_SOURCE_COLUMNS = (
    "organization_id, hour, currency, provider, model, project_id, requests, unpriced, total_cost, priced_tokens, "
    "total_tokens, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_sum, latency_count, "
    "latency_p95"
)
_TOTALS = (
    "sum(total_cost) AS total_cost, sum(requests) AS request_count, sum(unpriced) AS unpriced_requests, "
    "sum(total_tokens) AS total_tokens, sum(prompt_tokens) AS prompt_tokens, "
    "sum(completion_tokens) AS completion_tokens"
)
_TOKENS = "sum(requests) AS requests, sum(prompt_tokens), sum(completion_tokens), sum(total_tokens)"
_AVG_LATENCY = "if(sum(latency_count) = 0, NULL, sum(latency_sum) / sum(latency_count))"


@dataclass(frozen=True)
class HourPlan:
    """Which hours come from where: the rollup for ``[rollup_start, rollup_end)`` (None:
    unbounded) but ``base_ranges``, which (with the rest of the filter range) come from
    ``usage_costs``."""

    rollup_start: datetime | None
    rollup_end: datetime | None
    base_ranges: tuple[tuple[datetime, datetime], ...]


def eligible(
    filters: CostFilterParams,
    group_by: tuple[str, ...] = (),
    granularity: Granularity | None = None,
    timezone: str = "UTC",
) -> bool:
    """Whether the rollup holds everything this query filters and groups by."""
    if filters.user_id is not None or filters.tags or filters.metadata:
        return False
    if not set(group_by) <= ROLLUP_GROUPS:
        return False
    if granularity == "minute":
        return False
    if granularity is not None and timezone != "UTC":
        if filters.start is None or filters.end is None:
            return False
        return whole_hour_offsets(timezone, hour_of(filters.start), hour_of(filters.end) + HOUR)
    return True


@functools.lru_cache(maxsize=256)
def whole_hour_offsets(timezone: str, start: datetime, end: datetime) -> bool:
    """Whether ``timezone``'s offset is a whole number of hours at every UTC hour of
    ``[start, end)``: then each local period starts on a UTC hour."""
    zone = zone_of(timezone)
    moment = start
    while moment < end:
        offset = moment.astimezone(zone).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return False
        moment += HOUR
    return True


def plan(filters: CostFilterParams, dirty: list[datetime]) -> HourPlan | None:
    """The split of ``filters``' range (see :class:`HourPlan`), or None when the base table
    alone is better: a range inside one hour, or too many separate dirty ranges."""
    start, end = filters.start, filters.end
    rollup_start = _ceil_hour(start) if start is not None else None
    rollup_end = hour_of(end) if end is not None else None
    if rollup_start is not None and rollup_end is not None and rollup_start >= rollup_end:
        return None
    ranges: list[tuple[datetime, datetime]] = []
    if start is not None and rollup_start is not None and start < rollup_start:
        ranges.append((start, rollup_start))
    for hour in dirty:
        if (rollup_start is not None and hour < rollup_start) or (rollup_end is not None and hour >= rollup_end):
            continue
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    if end is not None and rollup_end is not None and rollup_end < end:
        if ranges and ranges[-1][1] == rollup_end:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((rollup_end, end))
    if len(ranges) > MAX_BASE_RANGES:
        return None
    return HourPlan(rollup_start, rollup_end, tuple(ranges))


def _ceil_hour(moment: datetime) -> datetime:
    floor = hour_of(moment)
    return floor if floor == moment.astimezone(UTC) else floor + HOUR


def hourly_source(db: str, filters: CostFilterParams, hours: HourPlan) -> Query:
    """The hourly source of a rollup-backed query: rollup rows of the clean hours, and the same
    measures from ``usage_costs`` for ``hours.base_ranges``. Both parts are filtered by
    :func:`where_clause` (the caller's organization above all); only the base part by date,
    the rollup part by its hours."""
    undated = filters.model_copy(update={"start_date": None, "end_date": None})
    where, params = where_clause(undated)
    conditions = [where.removeprefix(" WHERE ")] if where else []
    conditions.append("requests > 0")  # 0: a group that no longer exists
    if hours.rollup_start is not None:
        conditions.append("hour >= {rollup_start:DateTime('UTC')}")
        params["rollup_start"] = hours.rollup_start
    if hours.rollup_end is not None:
        conditions.append("hour < {rollup_end:DateTime('UTC')}")
        params["rollup_end"] = hours.rollup_end
    ranges: list[str] = []
    for index, (low, high) in enumerate(hours.base_ranges):
        params[f"base_from_{index}"], params[f"base_to_{index}"] = low, high
        ranges.append(f"(timestamp >= {{base_from_{index}:DateTime64(3, 'UTC')}} "
                      f"AND timestamp < {{base_to_{index}:DateTime64(3, 'UTC')}})")  # fmt: skip
        conditions.append(f"NOT (hour >= {{base_from_{index}:DateTime64(3, 'UTC')}} "
                          f"AND hour < {{base_to_{index}:DateTime64(3, 'UTC')}})")  # fmt: skip
    sql = f"SELECT {_SOURCE_COLUMNS} FROM {db}.usage_costs_hourly FINAL WHERE {' AND '.join(conditions)}"
    if ranges:
        base_where, base_params = where_clause(filters)
        params.update(base_params)
        base_where = f"{base_where} AND" if base_where else " WHERE"
        sql += (
            f" UNION ALL SELECT {HOURLY_KEYS}, {HOURLY_AGGREGATES} FROM {db}.usage_costs FINAL{base_where} "
            f"({' OR '.join(ranges)}) GROUP BY organization_id, hour, currency, provider, model, project_id"
        )
    return Query(f"({sql})", params)


def aggregate_query(source: Query, agg: AggregateParams) -> Query:
    """:func:`sinks.queries.aggregate_query` over the hourly source (same columns, same order)."""
    params = dict(source.parameters)
    keys: list[tuple[str, str]] = [(key, key) for key in agg.group_by if key in ROLLUP_GROUPS]
    keys.append(("currency", "currency"))
    if agg.granularity is not None:
        keys.insert(0, (period_expression(agg.granularity, agg.timezone, params, "hour"), "period_start"))
    names = [alias for _, alias in keys]
    select = ", ".join([*(expr if expr == alias else f"{expr} AS {alias}" for expr, alias in keys), _TOTALS])
    group = f" GROUP BY {', '.join(names)} ORDER BY {', '.join(names)}"
    return Query(f"SELECT {select} FROM {source.sql}{group}", params)


def summary_query(source: Query) -> Query:
    """:func:`sinks.queries.summary_query` over the hourly source."""
    sql = (
        "SELECT currency, provider, model, sum(total_cost) AS cost, sum(requests) AS requests, "
        "sum(unpriced) AS unpriced, sum(total_tokens) AS tokens "
        f"FROM {source.sql} "
        "GROUP BY GROUPING SETS ((currency), (currency, provider), (currency, model)) "
        "ORDER BY cost DESC, currency, provider, model"
    )
    return Query(sql, dict(source.parameters))


def usage_totals_query(source: Query) -> Query:
    sql = f"SELECT {_TOKENS}, sum(cached_tokens), sum(reasoning_tokens) FROM {source.sql}"
    return Query(sql, dict(source.parameters))


def usage_series_query(source: Query, series: SeriesParams) -> Query:
    params = dict(source.parameters)
    period = period_expression(series.granularity, series.timezone, params, "hour")
    sql = f"SELECT {period} AS period_start, {_TOKENS} FROM {source.sql} GROUP BY period_start ORDER BY period_start"
    return Query(sql, params)


def usage_by_model_query(source: Query) -> Query:
    sql = f"SELECT provider, model, {_TOKENS} FROM {source.sql} GROUP BY provider, model ORDER BY provider, model"
    return Query(sql, dict(source.parameters))


def cost_series_query(source: Query, series: SeriesParams) -> Query:
    params = dict(source.parameters)
    period = period_expression(series.granularity, series.timezone, params, "hour")
    sql = (
        f"SELECT currency, {period} AS period_start, sum(total_cost), sum(requests), sum(unpriced) "
        f"FROM {source.sql} GROUP BY currency, period_start ORDER BY currency, period_start"
    )
    return Query(sql, params)


_RANKED = {"project": ("project_id, NULL", "project_id"), "model": ("model, provider", "model, provider")}


def top_costs_query(source: Query, series: SeriesParams, by: str) -> Query:
    select, keys = _RANKED[by]
    params = {**source.parameters, "limit": series.limit}
    sql = (
        f"SELECT currency, {select}, sum(total_cost) AS cost, sum(requests) FROM {source.sql} "
        f"GROUP BY currency, {keys} ORDER BY currency, cost DESC, {keys} LIMIT {{limit:UInt32}} BY currency"
    )
    return Query(sql, params)


def provider_comparison_query(source: Query) -> Query:
    sql = (
        "SELECT provider, currency, sum(requests), sum(unpriced), sum(total_tokens), sum(total_cost), "
        f"{_AVG_LATENCY} FROM {source.sql} GROUP BY provider, currency ORDER BY provider, currency"
    )
    return Query(sql, dict(source.parameters))


def model_comparison_query(source: Query) -> Query:
    sql = (
        "SELECT provider, model, currency, sum(requests), sum(unpriced), sum(total_tokens), sum(total_cost), "
        f"sum(priced_tokens), {_AVG_LATENCY}, quantileMerge(0.95)(latency_p95) "
        f"FROM {source.sql} GROUP BY provider, model, currency ORDER BY provider, model, currency"
    )
    return Query(sql, dict(source.parameters))


def trend_query(source: Query, series: SeriesParams, split: datetime) -> Query:
    """:func:`sinks.trend_queries.trend_query` over the hourly source (``split`` is a whole hour)."""
    params = {**source.parameters, "split": split}
    period = period_expression(series.granularity, series.timezone, params, "hour")
    sql = (
        f"SELECT {period} AS period_start, hour >= {{split:DateTime('UTC')}} AS current, "
        "sum(total_cost) AS cost, sum(requests) AS requests, sum(unpriced) AS unpriced, "
        f"sum(total_tokens) AS tokens FROM {source.sql} "
        "GROUP BY period_start, current ORDER BY period_start, current"
    )
    return Query(sql, params)


def split_on_hour(split: datetime) -> bool:
    return hour_of(split) == split.astimezone(UTC)


def rollup_source(
    store: ClickHouseStore,
    filters: CostFilterParams,
    group_by: tuple[str, ...] = (),
    granularity: Granularity | None = None,
    timezone: str = "UTC",
) -> Query | None:
    """The hourly source for this query, or None when it must read ``usage_costs`` alone."""
    if not eligible(filters, group_by, granularity, timezone):
        return None
    hours = plan(filters, dirty_hours(store, filters.organization_id, filters.start, filters.end))
    return None if hours is None else hourly_source(store.database, filters, hours)
