"""``cost-ops reprice``: price a stored time range again with the rules in force now.

After a price is added or corrected, the events of a range are read back from ClickHouse,
priced by the same :class:`streams.pricing.Pricer` the workers use, and written again with a
newer ``priced_at``. ``usage_costs`` keeps the latest pricing of each event id
(``ReplacingMergeTree(priced_at)``, read with ``FINAL``), so every aggregate reflects the new
price exactly once: the old row is replaced, never added to.

Tiered rules: the range is read in (timestamp, organization, event id) order, and each
month's volume starts from the tokens of that month stored before the range, so a range
repriced in pieces (the CLI goes day by day) gets the same tiers as in one piece.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from schemas.columns import USAGE_SCHEMA, millis
from sinks.rollup import marks_of
from streams.pricing import Pricer
from streams.volume import DictVolumes, VolumeKey, count_volumes

CHUNK_ROWS = 50_000


class Store(Protocol):
    """What repricing needs of :class:`sinks.store.ClickHouseStore`."""

    def table(self, name: str) -> str: ...

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table: ...

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None) -> None: ...


@dataclass
class RepriceResult:
    events: int = 0
    priced: int = 0
    unpriced: int = 0


def reprice(
    store: Store, pricer: Pricer, start: datetime, end: datetime, organization_id: str | None = None
) -> RepriceResult:
    """Price ``[start, end)`` (of one organization, or all) again and store the new prices."""
    table = store.table("usage_costs")
    result = RepriceResult()
    volumes = DictVolumes(_volumes_before(store, table, start, organization_id))
    for usage in _chunks(store, table, start, end, organization_id):
        before = count_volumes(usage, np.zeros(usage.num_rows, dtype=np.int64), volumes)
        priced = pricer.price(usage, millis(datetime.now(UTC)), before)
        store.insert_arrow("usage_costs", priced, {"optimize_on_insert": 0})
        # After the rows: the hourly rollup recomputes these hours (sinks.rollup).
        store.insert_arrow("rollup_marks", marks_of(priced))
        unpriced = priced.num_rows - priced.column("unpriced_reason").null_count
        result.events += priced.num_rows
        result.unpriced += unpriced
        result.priced += priced.num_rows - unpriced
    return result


def _filters(organization_id: str | None) -> str:
    return " AND organization_id = {org:String}" if organization_id is not None else ""


def _volumes_before(store: Store, table: str, start: datetime, organization_id: str | None) -> dict[VolumeKey, int]:
    """Each (organization, provider, model, month)'s tokens stored before ``start`` in its month."""
    sql = (
        "SELECT organization_id, provider, lower(model), formatDateTime(toStartOfMonth(timestamp), '%Y-%m'), "
        f"sum(prompt_tokens + completion_tokens) FROM {table} FINAL "
        "WHERE timestamp >= toStartOfMonth({start:DateTime64(3, 'UTC')}) AND timestamp < {start:DateTime64(3, 'UTC')}"
        f"{_filters(organization_id)} GROUP BY 1, 2, 3, 4"
    )
    rows = store.query(sql, {"start": start, "org": organization_id})
    return {(org, provider, model, month): int(tokens) for org, provider, model, month, tokens in rows}


def _chunks(
    store: Store, table: str, start: datetime, end: datetime, organization_id: str | None
) -> Iterator[pa.Table]:
    """The range's usage columns in (timestamp, organization, event id) order, a chunk at a time
    (keyset pagination: rows written meanwhile cannot shift a page)."""
    columns = ", ".join(USAGE_SCHEMA.names)
    after: tuple[datetime, str, str] | None = None
    while True:
        params: dict[str, Any] = {"start": start, "end": end, "org": organization_id, "limit": CHUNK_ROWS}
        keyset = ""
        if after is not None:
            keyset = " AND (timestamp, organization_id, event_id) > ({t:DateTime64(3, 'UTC')}, {o:String}, {e:String})"
            params.update(t=after[0], o=after[1], e=after[2])
        sql = (
            f"SELECT {columns} FROM {table} FINAL WHERE timestamp >= {{start:DateTime64(3, 'UTC')}} "
            f"AND timestamp < {{end:DateTime64(3, 'UTC')}}{_filters(organization_id)}{keyset} "
            "ORDER BY timestamp, organization_id, event_id LIMIT {limit:UInt32}"
        )
        chunk = store.query_arrow(sql, params)
        if chunk.num_rows == 0:
            return
        usage = _usage(chunk)
        yield usage
        if chunk.num_rows < CHUNK_ROWS:
            return
        last = usage.slice(usage.num_rows - 1).to_pylist()[0]
        after = (last["timestamp"], last["organization_id"], last["event_id"])


def _usage(chunk: pa.Table) -> pa.Table:
    """ClickHouse's Arrow types (plain strings, UInt64, nanosecond-free DateTime64) as the
    usage columns the pricer takes."""
    arrays = []
    for field in USAGE_SCHEMA:
        column = chunk.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(pa.string()).dictionary_encode().cast(field.type)
        else:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=USAGE_SCHEMA).combine_chunks()
