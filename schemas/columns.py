"""Usage events as columns: an Arrow table with one row per event.

The pricing stage works on whole batches, so events travel as columns from the moment a
message is decoded: the Avro batch record (``usage_batch.avsc``, one array per field) maps
onto the table column for column, and a single-event record becomes a one-row table. Column
names are those of the ClickHouse table ``usage_costs``, so a priced table is inserted as is.

Timestamps are milliseconds since the epoch (UTC) everywhere in this module: the schemas'
``timestamp-millis`` logical type is not converted on the way in or out (see
``registry.parsed_schema``), so no ``datetime`` is built per event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import DecodeError
from schemas.usage import UsageEvent

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TEXT = pa.dictionary(pa.int32(), pa.string())
"""Text that repeats across a batch: stored once per message, as the batch itself does."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

USAGE_SCHEMA = pa.schema(
    [
        ("organization_id", TEXT),
        ("event_id", pa.string()),
        ("timestamp", TIMESTAMP),
        ("provider", TEXT),
        ("model", TEXT),
        ("model_version", TEXT),
        ("context_window", pa.int64()),
        ("project_id", TEXT),
        ("user_id", TEXT),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("latency_ms", pa.int64()),
        ("tags", pa.list_(pa.string())),
        ("metadata", pa.map_(pa.string(), pa.string())),
        ("source_type", TEXT),
        ("source_endpoint", TEXT),
        ("ingested_at", TIMESTAMP),
    ]
)
"""The usage columns. ``TEXT`` columns are dictionary-encoded; ClickHouse takes them as they are."""

BATCH_COLUMNS: tuple[str, ...] = tuple(USAGE_SCHEMA.names[1:])
"""The batch record's per-event arrays (it adds ``organization_id`` and ``strings``)."""


def millis(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact: no float on the way)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def iso_millis(value: datetime) -> str:
    """An aware datetime as the records' UTC text, to the millisecond: ``2025-03-01T00:00:00.000Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_millis(value: int) -> datetime | int:
    """The datetime of an epoch-milliseconds value; the number itself when no datetime can
    hold it, so validation reports it instead of a conversion crashing."""
    try:
        return EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        return value


def is_batch(record: dict[str, Any]) -> bool:
    """Whether a decoded record is a batch (columns) rather than a single event."""
    return isinstance(record.get("event_id"), list)


_REFERENCES = ("provider", "model", "model_version", "project_id", "user_id", "source_type", "source_endpoint")
_NUMBERS = ("context_window", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
            "cache_write_tokens", "reasoning_tokens", "latency_ms")  # fmt: skip
_SINCE_V2 = ("cache_write_tokens",)
"""Columns a batch written before them lacks (or holds empty): every value 0."""
_NULL_NUMBER = {"context_window": 0, "latency_ms": -1}
"""The value standing for null in the batch's numeric columns (never valid otherwise)."""


def table_from_batch(record: dict[str, Any]) -> pa.Table:
    """The table of a decoded ``UsageBatch`` record; :class:`DecodeError` when its columns
    disagree on the number of events or a reference points nowhere (no schema can say that)."""
    size = len(record["event_id"])
    for name in _SINCE_V2:
        column = record.get(name)
        if column is None or len(column) == 0:
            record = {**record, name: np.zeros(size, dtype=np.int64)}
    for name in BATCH_COLUMNS:
        if _rows(record[name]) != size:
            raise DecodeError(f"batch column {name} has {_rows(record[name])} items, event_id has {size}")
    strings = pa.array(record["strings"], pa.string())
    columns: dict[str, pa.Array] = {
        "organization_id": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(size, dtype=np.int32)), pa.array([record["organization_id"]], pa.string())
        ),
        "event_id": pa.array(record["event_id"], pa.string()),
        "timestamp": pa.array(np.asarray(record["timestamp"], dtype=np.int64)).cast(TIMESTAMP),
        "ingested_at": pa.array(np.asarray(record["ingested_at"], dtype=np.int64)).cast(TIMESTAMP),
        "tags": _lists(record["tags"], strings, "tags"),
        "metadata": _maps(record["metadata"], strings),
    }
    texts = record["strings"]
    # What a producer that interns its strings (ours) writes: then no column needs compacting.
    shared = len(texts) <= max(size, 1) and len(set(texts)) == len(texts)
    for name in _REFERENCES:
        columns[name] = _dereference(np.asarray(record[name], dtype=np.int64), strings, name, shared)
    for name in _NUMBERS:
        values = np.asarray(record[name], dtype=np.int64)
        null = _NULL_NUMBER.get(name)
        columns[name] = pa.array(values, mask=values == null) if null is not None else pa.array(values)
    return pa.Table.from_pydict(columns, schema=USAGE_SCHEMA)


def _rows(column: Any) -> int:
    # Nested lists come as (offsets, flat values) from the vectorized reader.
    return len(column[0]) - 1 if isinstance(column, tuple) else len(column)


def _dereference(indices: np.ndarray, strings: pa.Array, name: str, shared: bool) -> pa.Array:
    """The batch's references as a dictionary column; -1 is null. ``shared``: the batch's
    strings are distinct and no more than its events, so every column may use them as they
    are; otherwise each column gets only the strings it uses, each once."""
    if len(indices) and (indices.min() < -1 or indices.max() >= len(strings)):
        raise DecodeError(f"batch column {name} refers to a string the batch does not hold")
    if shared:
        return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32), mask=indices < 0), strings)
    return compact_codes(indices, strings)


def dictionary_array(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """One dictionary array of a text column: its chunks' dictionaries unified, or the column
    dictionary-encoded when it is plain text."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)


def codes(indices: pa.Array) -> np.ndarray:
    """Dictionary indices as int64, -1 where null (read from the buffers: no kernel call)."""
    raw = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=indices.offset + len(indices))
    result = raw[indices.offset :].astype(np.int64)
    if indices.null_count:
        result[~np.asarray(indices.is_valid().to_numpy(zero_copy_only=False), dtype=bool)] = -1
    return result


def compact_codes(indices: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """A dictionary column holding only the values ``indices`` use, each once (-1 is null).

    A batch's ``strings`` serve every column, may repeat a value, and merging the tables of
    many messages unions their dictionaries: left as they are, every message written
    downstream would carry all of it, and ClickHouse refuses a dictionary with duplicates.
    """
    valid = indices >= 0
    present = np.zeros(len(dictionary), dtype=bool)  # a mark per entry: linear, no sort
    present[indices[valid]] = True
    used = np.flatnonzero(present)
    slots: dict[str, int] = {}
    remap = np.zeros(len(dictionary), dtype=np.int32)
    remap[used] = [slots.setdefault(text, len(slots)) for text in dictionary.take(pa.array(used)).to_pylist()]
    compacted = np.where(valid, remap[np.maximum(indices, 0)] if len(remap) else 0, 0).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(compacted, mask=~valid), pa.array(list(slots), pa.string()))


def compact(table: pa.Table, oversized_only: bool = False) -> pa.Table:
    """``table`` with each dictionary column compacted (see :func:`compact_codes`).

    ``oversized_only``: only where the dictionary is longer than the column, i.e. certainly
    holds text the rows do not use (a slice of a take's table); cheaper, for dictionaries
    already free of duplicates.
    """
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            array = column.combine_chunks()
            if not oversized_only or len(array.dictionary) > len(array):
                column = compact_codes(codes(array.indices), array.dictionary)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def _flatten(lists: Any, strings: pa.Array, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and flat indices of a column of index lists (lists, or offsets and values)."""
    if isinstance(lists, tuple):
        offsets, flat = lists
        offsets = offsets.astype(np.int32)
    else:
        offsets = np.zeros(len(lists) + 1, dtype=np.int32)
        np.cumsum([len(item) for item in lists], out=offsets[1:])
        flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
    if len(flat) and (flat.min() < 0 or flat.max() >= len(strings)):
        raise DecodeError(f"batch column {name} refers to a string the batch does not hold")
    return offsets, flat


def _lists(lists: Any, strings: pa.Array, name: str) -> pa.Array:
    offsets, flat = _flatten(lists, strings, name)
    return pa.ListArray.from_arrays(pa.array(offsets), strings.take(pa.array(flat)))


def _maps(lists: Any, strings: pa.Array) -> pa.Array:
    offsets, flat = _flatten(lists, strings, "metadata")
    if (offsets % 2).any():
        raise DecodeError("batch column metadata holds a key without a value")
    keys, values = strings.take(pa.array(flat[0::2])), strings.take(pa.array(flat[1::2]))
    return pa.MapArray.from_arrays(pa.array(offsets // 2), keys, values)


def table_from_records(records: Sequence[dict[str, Any]]) -> pa.Table:
    """The table of decoded single-event ``UsageEvent`` records (nested model and source)."""
    columns: dict[str, list[Any]] = {name: [] for name in USAGE_SCHEMA.names}
    for record in records:
        model = record["model"]
        source = record.get("source") or {}
        for name, value in (
            ("organization_id", record["organization_id"]), ("event_id", record["id"]),
            ("timestamp", _ms(record["timestamp"])), ("provider", record["provider"]), ("model", model["name"]),
            ("model_version", model.get("version")), ("context_window", model.get("context_window")),
            ("project_id", record.get("project_id")), ("user_id", record.get("user_id")),
            ("prompt_tokens", record["prompt_tokens"]), ("completion_tokens", record["completion_tokens"]),
            ("total_tokens", record["total_tokens"]), ("cached_tokens", record.get("cached_tokens", 0)),
            ("cache_write_tokens", record.get("cache_write_tokens", 0)),
            ("reasoning_tokens", record.get("reasoning_tokens", 0)), ("latency_ms", record.get("latency_ms")),
            ("tags", record.get("tags") or []), ("metadata", record.get("metadata") or {}),
            ("source_type", source.get("type")), ("source_endpoint", source.get("endpoint")),
            ("ingested_at", _ms(record["ingested_at"])),
        ):  # fmt: skip
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=USAGE_SCHEMA)


def event_record(event: UsageEvent) -> dict[str, Any]:
    """The ``UsageEvent`` Avro record of a validated event (timestamps in milliseconds)."""
    record = event.model_dump(mode="python")
    record["timestamp"] = millis(event.timestamp)
    record["ingested_at"] = millis(event.ingested_at)
    return record


def batch_record(events: Sequence[UsageEvent]) -> dict[str, Any]:
    """The ``UsageBatch`` Avro record of validated events of one organization."""
    if not events:
        raise ValueError("a batch holds at least one event")
    organization = events[0].organization_id
    if any(e.organization_id != organization for e in events):
        raise ValueError("a batch holds the events of one organization")
    strings: dict[str, int] = {}

    def ref(value: str | None) -> int:
        return -1 if value is None else strings.setdefault(value, len(strings))

    return {
        "organization_id": organization,
        "event_id": [e.id for e in events],
        "timestamp": [millis(e.timestamp) for e in events],
        "provider": [ref(e.provider) for e in events],
        "model": [ref(e.model.name) for e in events],
        "model_version": [ref(e.model.version) for e in events],
        "context_window": [e.model.context_window or 0 for e in events],
        "project_id": [ref(e.project_id) for e in events],
        "user_id": [ref(e.user_id) for e in events],
        "prompt_tokens": [e.prompt_tokens for e in events],
        "completion_tokens": [e.completion_tokens for e in events],
        "total_tokens": [e.tokens_total for e in events],
        "cached_tokens": [e.cached_tokens for e in events],
        "cache_write_tokens": [e.cache_write_tokens for e in events],
        "reasoning_tokens": [e.reasoning_tokens for e in events],
        "latency_ms": [-1 if e.latency_ms is None else e.latency_ms for e in events],
        "tags": [[ref(tag) for tag in e.tags] for e in events],
        "metadata": [[ref(part) for item in e.metadata.items() for part in item] for e in events],
        "source_type": [ref(e.source.type if e.source else None) for e in events],
        "source_endpoint": [ref(e.source.endpoint if e.source else None) for e in events],
        "ingested_at": [millis(e.ingested_at) for e in events],
        # Last: every reference above has added its text by now.
        "strings": list(strings),
    }


def table_from_events(events: Sequence[UsageEvent]) -> pa.Table:
    """The table of validated events (any organizations)."""
    return table_from_records([event_record(e) for e in events])


def row_record(table: pa.Table, index: int) -> dict[str, Any]:
    """Row ``index`` as a single-event ``UsageEvent`` Avro record (timestamps in milliseconds):
    what a dead letter taken out of a batch is re-encoded as, and what validation reads."""
    row = {
        name: (column.cast(pa.int64()) if column.type == TIMESTAMP else column)[index].as_py()
        for name, column in zip(table.column_names, table.columns, strict=True)
    }
    source = None
    if row["source_type"] is not None or row["source_endpoint"] is not None:
        # An endpoint without a type stays visible to validation instead of vanishing.
        source = {"type": row["source_type"], "endpoint": row["source_endpoint"]}
    return {
        "id": row["event_id"],
        "timestamp": row["timestamp"],
        "provider": row["provider"],
        "model": {"name": row["model"], "version": row["model_version"], "context_window": row["context_window"]},
        "organization_id": row["organization_id"],
        "project_id": row["project_id"],
        "user_id": row["user_id"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "cached_tokens": row["cached_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "latency_ms": row["latency_ms"],
        "tags": row["tags"] or [],
        "metadata": dict(row["metadata"] or []),
        "source": source,
        "ingested_at": row["ingested_at"],
    }


def validation_input(record: dict[str, Any]) -> dict[str, Any]:
    """A single-event record as :meth:`UsageEvent.parse` reads it (datetimes, not millis)."""
    return {
        **record,
        "timestamp": from_millis(record["timestamp"]),
        "ingested_at": from_millis(record["ingested_at"]),
    }


def _ms(value: Any) -> Any:
    # A registry schema may keep a logical type the pipeline does not drop (timestamp-micros):
    # fastavro then hands back a datetime.
    return millis(value) if isinstance(value, datetime) else value


def unique_rows(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of non-negative int columns and, per row, its distinct row's index.

    Packed into one int64 per row where the sizes allow it (a 1-D unique is many times faster
    than a unique of rows); as rows otherwise, so no size of dictionary or span of time can
    overflow a key.
    """
    sizes = [int(part.max()) + 1 if len(part) else 1 for part in parts]
    if math.prod(sizes) >= 2**62:
        combos, inverse = np.unique(np.stack(parts, axis=1), axis=0, return_inverse=True)
        return combos, inverse.reshape(-1)
    packed = np.zeros(len(parts[0]), dtype=np.int64)
    for part, size in zip(parts, sizes, strict=True):
        packed = packed * size + part
    unique, inverse = np.unique(packed, return_inverse=True)
    digits = []
    for size in reversed(sizes):
        unique, digit = np.divmod(unique, size)
        digits.append(digit)
    return np.stack(digits[::-1], axis=1), inverse.reshape(-1)
