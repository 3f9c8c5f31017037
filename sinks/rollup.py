"""The hourly rollup ``usage_costs_hourly``: which hours are dirty, and how they are recomputed.

Why not a materialized view: a view sums what is inserted, and ``usage_costs`` is written
more than once per event (a replayed batch, a reprice, a delete's tombstone); only
``usage_costs FINAL`` knows which copy counts. So the rollup is *recomputed* from
``usage_costs FINAL`` one (organization, UTC hour) at a time, never incremented:

1. every writer of ``usage_costs`` (the sink, ``reprice``, a delete) marks the (organization,
   hour) pairs it wrote, *after* its rows are stored: ``rollup_marks`` (a ReplacingMergeTree
   keeping the latest ``marked_at`` per pair; ``marked_at`` is the server's clock at insert);
2. :class:`RollupRefresher` (in the sink process) reads the pairs whose latest mark is newer
   than their last refresh, recomputes those hours from ``usage_costs FINAL`` into rows of a
   new ``version``, writes ``requests = 0`` over the groups of those hours that no longer
   exist (a delete or a reprice into another currency can remove one), and only then records
   ``refreshed_through`` = the latest mark it saw. A mark written meanwhile is newer, so its
   hour stays dirty and is recomputed next time;
3. queries (:mod:`sinks.rollup_queries`) read the rollup for clean hours only, and
   ``usage_costs FINAL`` for the dirty hours and for partial hours at the edges of the range.

A write is thus either in a clean hour's rollup or its hour is dirty and read from the base
table: the answers equal the base table's exactly. The limit: a writer that crashes between
storing its rows and marking their hours leaves that hour stale until it is written again
(the sink replays its uncommitted batch, which marks it; ``reprice`` must be run again).
One refresher runs per database: the sink process's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.query import as_utc
from sinks.queries import Query
from sinks.store import ClickHouseStore

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
_HOURLY_COLUMNS = (
    "organization_id, hour, currency, provider, model, project_id, requests, unpriced, total_cost, priced_tokens, "
    "total_tokens, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_sum, latency_count, "
    "latency_p95"
)
HOURLY_AGGREGATES = (
    "count(), countIf(pricing_status = 'unpriced'), sum(total_cost), sumIf(total_tokens, total_cost IS NOT NULL), "
    "sum(total_tokens), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(reasoning_tokens), "
    "sum(ifNull(latency_ms, 0)), count(latency_ms), quantileState(0.95)(latency_ms)"
)
"""The rollup's measures over ``usage_costs`` rows, in the rollup's column order (also the base
side of a mixed query). No aliases: an alias named like a column would shadow it in the others."""
HOURLY_KEYS = (
    "organization_id, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, currency, provider, model, project_id"
)


def marks_of(table: pa.Table) -> pa.Table:
    """The distinct (organization_id, hour) pairs of priced rows, as ``rollup_marks`` rows."""
    hours = pc.floor_temporal(table.column("timestamp"), unit="hour")
    pairs = pa.table({"organization_id": table.column("organization_id").cast(pa.string()), "hour": hours})
    distinct = pairs.group_by(["organization_id", "hour"]).aggregate([])
    return pa.table(
        {
            "organization_id": distinct.column("organization_id"),
            "hour": distinct.column("hour").cast(pa.timestamp("s", tz="UTC")),
        }
    )


def mark_hours(store: ClickHouseStore, table: pa.Table) -> None:
    """Mark the hours of rows just written to ``usage_costs`` dirty (after the write, never before)."""
    if table.num_rows:
        store.insert_arrow("rollup_marks", marks_of(table))


def mark_hour(store: ClickHouseStore, organization_id: str, hour: datetime) -> None:
    store.insert("rollup_marks", [[organization_id, hour_of(hour)]], ["organization_id", "hour"])


def hour_of(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def dirty_query(db: str, organization_id: str | None, start: datetime | None, end: datetime | None) -> Query:
    """(organization, hour, latest mark) of the hours marked since their last refresh."""
    conditions = ["m.marked_at > r.refreshed_through"]
    params: dict[str, Any] = {}
    refreshes = ""
    if organization_id is not None:
        conditions.append("m.organization_id = {organization_id:String}")
        refreshes = " WHERE organization_id = {organization_id:String}"  # only that organization's refreshes
        params["organization_id"] = organization_id
    if start is not None:
        conditions.append("m.hour >= {start:DateTime('UTC')}")
        params["start"] = hour_of(start)
    if end is not None:
        conditions.append("m.hour < {end:DateTime('UTC')}")
        params["end"] = end
    sql = (
        f"SELECT m.organization_id, m.hour, m.marked_at FROM {db}.rollup_marks AS m FINAL "
        f"LEFT JOIN (SELECT organization_id, hour, max(refreshed_through) AS refreshed_through "
        f"FROM {db}.rollup_refreshes{refreshes} GROUP BY organization_id, hour) AS r "
        "ON m.organization_id = r.organization_id AND m.hour = r.hour "
        f"WHERE {' AND '.join(conditions)} ORDER BY m.organization_id, m.hour"
    )
    return Query(sql, params)


def dirty_hours(
    store: ClickHouseStore, organization_id: str | None, start: datetime | None, end: datetime | None
) -> list[datetime]:
    """The dirty hours of ``[start, end)`` (of every organization when ``organization_id`` is None)."""
    query = dirty_query(store.database, organization_id, start, end)
    return sorted({as_utc(hour) for _, hour, _ in store.query(query.sql, query.parameters)})


def recompute_query(db: str, organization_id: str, hours: list[datetime]) -> Query:
    """The rollup rows of ``hours`` of one organization, from ``usage_costs FINAL`` (deleted
    rows are not there: the engine's is-deleted column hides them)."""
    sql = (
        f"INSERT INTO {db}.usage_costs_hourly ({_HOURLY_COLUMNS}, version) "
        f"SELECT {HOURLY_KEYS}, {HOURLY_AGGREGATES}, {{version:DateTime64(6, 'UTC')}} "
        f"FROM {db}.usage_costs FINAL WHERE organization_id = {{organization_id:String}} "
        "AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')} "
        "AND toStartOfHour(timestamp) IN {hours:Array(DateTime('UTC'))} "
        "GROUP BY organization_id, hour, currency, provider, model, project_id"
    )
    return Query(sql, _hour_params(organization_id, hours))


def vacate_query(db: str, organization_id: str, hours: list[datetime]) -> Query:
    """``requests = 0`` over the groups of ``hours`` the recompute did not write (their latest
    version is older): a group that no longer exists."""
    sql = (
        f"INSERT INTO {db}.usage_costs_hourly ({_HOURLY_COLUMNS}, version) "
        "SELECT organization_id, hour, currency, provider, model, project_id, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0, "
        "latency_p95, {version:DateTime64(6, 'UTC')} "
        f"FROM {db}.usage_costs_hourly FINAL WHERE organization_id = {{organization_id:String}} "
        "AND hour IN {hours:Array(DateTime('UTC'))} AND requests > 0 AND version < {version:DateTime64(6, 'UTC')}"
    )
    return Query(sql, _hour_params(organization_id, hours))


def _hour_params(organization_id: str, hours: list[datetime]) -> dict[str, Any]:
    return {"organization_id": organization_id, "hours": hours, "start": min(hours), "end": max(hours) + HOUR}


class RollupRefresher:
    """Recomputes dirty hours (see the module docstring). Not thread-safe: one per database.

    Args:
        store: the ClickHouse store.
        max_hours: hours recomputed per organization per statement.
    """

    def __init__(self, store: ClickHouseStore, max_hours: int = 200) -> None:
        self._store = store
        self._max_hours = max_hours

    def refresh(self) -> int:
        """Recompute every dirty hour; returns how many (organization, hour) pairs were refreshed."""
        db = self._store.database
        query = dirty_query(db, None, None, None)
        by_org: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for org, hour, marked_at in self._store.query(query.sql, query.parameters):
            by_org[org].append((as_utc(hour), marked_at))
        refreshed = 0
        for org, marks in by_org.items():
            for index in range(0, len(marks), self._max_hours):
                chunk = marks[index : index + self._max_hours]
                self._recompute(org, chunk)
                refreshed += len(chunk)
        if refreshed:
            logger.debug("rollup refreshed", extra={"operation": "rollup", "rows": refreshed})
        return refreshed

    def _recompute(self, organization_id: str, marks: list[tuple[datetime, datetime]]) -> None:
        hours = [hour for hour, _ in marks]
        version = self._store.query("SELECT now64(6)")[0][0]
        for query in (
            recompute_query(self._store.database, organization_id, hours),
            vacate_query(self._store.database, organization_id, hours),
        ):
            self._store.command(query.sql, {**query.parameters, "version": version})
        # Only now is the hour clean, up to the marks seen before the recompute read its rows.
        self._store.insert(
            "rollup_refreshes",
            [[organization_id, hour, marked_at] for hour, marked_at in marks],
            ["organization_id", "hour", "refreshed_through"],
        )
