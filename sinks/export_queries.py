"""Cost records for exports, read in keyset pages so memory stays flat whatever the row count.

Each page is its own statement: the store's per-statement lock (one statement at a time on
chDB) is held for one page, never for a whole export, so other queries interleave with a
long download. Pages follow ``list_query``'s order (newest first, then organization and id
ascending); "after" the last row of a page is an older timestamp, or the same timestamp and a
greater (organization_id, event_id), so rows written meanwhile neither repeat nor shift a page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pyarrow as pa

from schemas.query import CostFilterParams, CostRecord, SortKey
from sinks.queries import Query, after_clause, count_query, where_clause
from sinks.store import ClickHouseStore

EXPORT_COLUMNS: tuple[str, ...] = tuple(CostRecord.model_fields)
"""The columns of an export: those of ``GET /api/v1/costs`` records, in that order."""
MONEY_COLUMNS: frozenset[str] = frozenset(c for c in EXPORT_COLUMNS if c.endswith("_cost"))
"""The Decimal(38, 10) columns (every ``*_cost``)."""
PAGE_ROWS = 50_000

MoneyAs = Literal["decimal", "text"]
"""How money leaves the engine: ``decimal`` (Arrow decimal128(38, 10), for Parquet) or
``text``: the engine's ``toDecimalString(x, 10)``, "0.0000000001" exactly (Arrow's own
decimal-to-string cast writes small amounts as "1E-10")."""


def _select(money: MoneyAs) -> str:
    columns = []
    for column in EXPORT_COLUMNS:
        if column == "id":
            columns.append("event_id AS id")
        elif money == "text" and column in MONEY_COLUMNS:
            columns.append(f"toDecimalString({column}, 10) AS {column}")
        else:
            columns.append(column)
    return ", ".join(columns)


def export_page_query(
    table: str, filters: CostFilterParams, after: SortKey | None, limit: int, money: MoneyAs = "text"
) -> Query:
    """One keyset page of at most ``limit`` records after ``after`` (None: the first page)."""
    where, params = where_clause(filters)
    if after is not None:
        where = after_clause(where, params, after)
    params["limit"] = limit
    sql = (
        f"SELECT {_select(money)} FROM {table} FINAL{where} "
        "ORDER BY timestamp DESC, organization_id, event_id LIMIT {limit:UInt32}"
    )
    return Query(sql, params)


class CostExport:
    """Reads the records an export holds, page by page.

    Args:
        store: the ClickHouse store.
        page_rows: rows per page (and per statement).
    """

    def __init__(self, store: ClickHouseStore, page_rows: int = PAGE_ROWS) -> None:
        self._store = store
        self._table = store.table("usage_costs")
        self._page_rows = page_rows

    def count(self, filters: CostFilterParams) -> int:
        query = count_query(self._table, filters)
        return int(self._store.query(query.sql, query.parameters)[0][0])

    def pages(self, filters: CostFilterParams, money: MoneyAs = "text") -> Iterator[pa.Table]:
        """Arrow tables of :data:`EXPORT_COLUMNS`, the first one always (it may be empty: it
        carries the schema), then one per further page until a short one."""
        after: SortKey | None = None
        while True:
            query = export_page_query(self._table, filters, after, self._page_rows, money)
            page = self._store.query_arrow(query.sql, query.parameters)
            yield page
            if page.num_rows < self._page_rows:
                return
            last = page.slice(page.num_rows - 1).to_pylist()[0]
            after = SortKey(timestamp=last["timestamp"], organization_id=last["organization_id"], event_id=last["id"])
