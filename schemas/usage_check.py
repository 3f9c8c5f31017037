"""The usage rules on whole columns: which rows validation must look at one by one.

:class:`schemas.usage.UsageEvent` is the one statement of the rules. Building it for every
event of a batch costs ~30 us an event, more than everything else the worker does, so the
worker first checks the columns at once and only rows flagged here go through the model.

The check is *conservative*: a row it passes is one the model accepts unchanged (no
whitespace to strip, no case to fold, every bound met); a row it flags may still be valid
(the model then says so, and normalizes it). ``tests/unit/schemas/test_usage_check.py``
holds it to that on generated edge cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.columns import codes, dictionary_array, millis
from schemas.usage import (
    EARLIEST,
    FUTURE_TOLERANCE,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE,
    MAX_TAGS,
    MAX_TOKENS,
)

_FUTURE_MS = int(FUTURE_TOLERANCE.total_seconds() * 1000)
_EARLIEST_MS = millis(EARLIEST)
_FIRST_MS = millis(datetime.min.replace(tzinfo=UTC))
_LAST_MS = millis(datetime.max.replace(tzinfo=UTC))
# Every character either Python or Rust (pydantic-core) counts as whitespace, as RE2 reads it.
_WHITESPACE = (
    r"[\x{09}-\x{0D}\x{1C}-\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"
)


def _is_identifier(value: str) -> bool:
    return 0 < len(value) <= 128 and not any(c.isspace() for c in value)


def _trimmed(max_length: int, min_length: int = 1) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return min_length <= len(value) <= max_length and value == value.strip()

    return check


_REQUIRED = (
    "event_id", "timestamp", "provider", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "cache_write_tokens", "reasoning_tokens", "ingested_at", "tags", "metadata",
)  # fmt: skip

_ENTRIES = pa.list_(pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string())]))

_CHECKS: dict[str, tuple[Callable[[str], bool], bool]] = {
    # column: (what a value must satisfy, whether null is allowed)
    "organization_id": (_is_identifier, False),
    "project_id": (_is_identifier, True),
    "user_id": (_is_identifier, True),
    "model": (_trimmed(200), False),
    "model_version": (_trimmed(200, min_length=0), True),
    "source_type": (_trimmed(50), True),
}


def rows_to_recheck(table: pa.Table, providers: frozenset[str], now_ms: int) -> np.ndarray:
    """A boolean per row: True where the row needs the full model to say whether it is valid."""
    flag = np.zeros(table.num_rows, dtype=bool)
    if table.num_rows == 0:
        return flag
    table = table.combine_chunks()  # one chunk: list parent indices are then row numbers
    flag |= _nulls(table, _REQUIRED)
    ids = table.column("event_id").combine_chunks()
    # Bytes bound characters from above: a flag on a long non-ASCII id is only a recheck.
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=ids.offset + len(ids) + 1)[ids.offset :]
    sizes = np.diff(offsets)
    flag |= (sizes == 0) | (sizes > 128)
    flag |= _mask(pc.match_substring_regex(ids, _WHITESPACE))
    flag |= _values_failing(table.column("provider"), providers.__contains__, nullable=False)
    for name, (check, nullable) in _CHECKS.items():
        flag |= _values_failing(table.column(name), check, nullable)
    flag |= _token_rules(table)
    flag |= _out_of(table.column("context_window"), 1, 100_000_000)
    flag |= _out_of(table.column("latency_ms"), 0, 86_400_000)
    timestamps = table.column("timestamp").cast(pa.int64())
    flag |= _out_of(timestamps, _EARLIEST_MS, now_ms + _FUTURE_MS)
    # Any instant a datetime can hold (years 1 to 9999); the model rejects the others.
    flag |= _out_of(table.column("ingested_at").cast(pa.int64()), _FIRST_MS, _LAST_MS)
    flag |= _values_failing(table.column("source_endpoint"), lambda value: len(value) <= 500, nullable=True)
    # An endpoint without a source type cannot be represented as a source: let the model say so.
    flag |= _mask(pc.and_(pc.is_null(table.column("source_type")), pc.is_valid(table.column("source_endpoint"))))
    flag |= _tag_rules(table.column("tags"))
    flag |= _metadata_rules(table.column("metadata"))
    return flag


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Booleans as numpy, a null counting as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _nulls(table: pa.Table, names: Iterable[str]) -> np.ndarray:
    flag = np.zeros(table.num_rows, dtype=bool)
    for name in names:
        column = table.column(name)
        if column.null_count:
            flag |= _mask(pc.is_null(column))
    return flag


def _out_of(values: pa.ChunkedArray, low: int, high: int) -> np.ndarray:
    return _mask(pc.or_(pc.less(values, low), pc.greater(values, high)))


def _values_failing(column: pa.ChunkedArray | pa.Array, check: Callable[[str], bool], nullable: bool) -> np.ndarray:
    """Rows whose value fails ``check`` (or is null where null is not allowed). Each distinct
    value is checked once: these are dictionary columns of a few values per batch."""
    values = dictionary_array(column)
    indices = codes(values.indices)
    dictionary = values.dictionary
    # Only the values this column uses: a batch's dictionary also holds other columns' text.
    bad = [i for i in np.unique(indices[indices >= 0]).tolist() if not _passes(dictionary[i].as_py(), check)]
    flag = np.isin(indices, bad) if bad else np.zeros(len(values), dtype=bool)
    if not nullable:
        flag |= indices < 0
    return flag


def _passes(value: str | None, check: Callable[[str], bool]) -> bool:
    return value is not None and check(value)


def _token_rules(table: pa.Table) -> np.ndarray:
    prompt, completion, total, cached, cache_write, reasoning = (
        table.column(name).to_numpy() for name in
        ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_write_tokens",
         "reasoning_tokens")
    )  # fmt: skip
    flag = np.zeros(table.num_rows, dtype=bool)
    for tokens in (prompt, completion, total, cached, cache_write, reasoning):
        flag |= (tokens < 0) | (tokens > MAX_TOKENS)
    # Bounded by MAX_TOKENS first, so the sum cannot overflow where it matters.
    flag |= total != prompt + completion
    flag |= cached + cache_write > prompt
    flag |= reasoning > completion
    return flag


def _rows_of(lists: pa.ChunkedArray | pa.Array, element_flags: np.ndarray, size: int) -> np.ndarray:
    """Rows holding at least one flagged element of a list (or map) column."""
    flag = np.zeros(size, dtype=bool)
    if element_flags.any():
        parents = pc.list_parent_indices(lists).to_numpy()
        flag[parents[element_flags]] = True
    return flag


def _tag_rules(column: pa.ChunkedArray) -> np.ndarray:
    tags = column.combine_chunks()
    size = len(tags)
    flag = _mask(pc.greater(pc.list_value_length(tags), MAX_TAGS))
    values = pc.list_flatten(tags)
    if len(values):
        flag |= _rows_of(tags, _values_failing(values, _trimmed(100), nullable=False), size)
    return flag


def _metadata_rules(column: pa.ChunkedArray) -> np.ndarray:
    metadata = column.combine_chunks().cast(_ENTRIES)  # map -> list of (key, value): the list kernels apply
    size = len(metadata)
    flag = _mask(pc.greater(pc.list_value_length(metadata), MAX_METADATA_KEYS))
    entries = pc.list_flatten(metadata)
    if len(entries):
        keys, values = entries.field("key"), entries.field("value")
        key_length = pc.utf8_length(keys)
        hits = _mask(pc.or_(pc.equal(key_length, 0), pc.greater(key_length, 100)))
        hits |= _mask(pc.greater(pc.utf8_length(values), MAX_METADATA_VALUE))
        hits |= _mask(pc.is_null(values))
        flag |= _rows_of(metadata, hits, size)
        # A key twice in one row: the model keeps one value, so the row is not unchanged.
        parents = pc.list_parent_indices(metadata).to_numpy().astype(np.int64)
        key_codes = codes(dictionary_array(keys).indices)
        width = int(key_codes.max()) + 1
        unique, counts = np.unique(parents * width + key_codes, return_counts=True)
        if (counts > 1).any():
            flag[np.unique(unique[counts > 1] // width)] = True
    return flag
