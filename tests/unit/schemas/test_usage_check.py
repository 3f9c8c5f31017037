"""The column check (schemas/usage_check.py) is conservative.

For every row ``rows_to_recheck`` does not flag, ``UsageEvent.parse`` of the row must succeed
and return exactly the row's values (nothing stripped, folded or filled in): the worker keeps
such rows without ever building the model. Equivalently, every row the model rejects or
changes must be flagged. Rows are generated around every rule's edges, in tables built from
single-event records and from decoded batches (whose numeric columns use 0 and -1 for null).
"""

from __future__ import annotations

import copy
import io
import random
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest

from schemas.batch_reader import read_batch
from schemas.columns import event_record, millis, row_record, table_from_batch, table_from_records, validation_input
from schemas.errors import EventValidationError
from schemas.provider import allowed_providers
from schemas.registry import parsed_schema, schema_text
from schemas.usage import EARLIEST, UsageEvent
from schemas.usage_check import rows_to_recheck

EventFactory = Callable[..., UsageEvent]
Record = dict[str, Any]

PROVIDERS = allowed_providers()
BATCH = parsed_schema(schema_text("usage_batch"))
EARLIEST_MS = millis(EARLIEST)
DAY_MS = 86_400_000
MAX_DATETIME_MS = millis(datetime.max.replace(tzinfo=UTC))  # 9999-12-31T23:59:59.999Z, 253402300799999
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# Whitespace to Python and to pydantic-core (Rust's White_Space), whitespace to Python only
# (the model keeps it: valid, though the check may flag it), and characters neither strips.
UNICODE_SPACES = ("\u00a0", "\u2003", "\u3000", "\x85", "\u2028", "\u202f", "\u1680", "\t", "\n", " ")
PYTHON_ONLY_SPACES = ("\x1c", "\x1f")
NOT_SPACES = ("\u200b", "\u180e", "\ufeff", "\x00", "\u00ad")

PASS, VALID, BAD = "pass", "valid", "bad"
"""What one change to a valid record makes of it: valid and not flagged even by a conservative
check (plain boundaries); valid (a check may still flag it); rejected or changed by the model."""

Change = tuple[str, str, Any, str]  # label, field path ("model.name"), new value, expectation


def now_ms() -> int:
    return millis(datetime.now(UTC))


def identifier_changes(path: str) -> list[Change]:
    changes: list[Change] = [
        ("a", path, "a", PASS),
        ("128 chars", path, "x" * 128, PASS),
        ("129 chars", path, "x" * 129, BAD),
        ("128 two-byte chars", path, "é" * 128, VALID),
        ("129 two-byte chars", path, "é" * 129, BAD),
        ("127 chars and an emoji", path, "x" * 127 + "🎉", VALID),
        ("128 emoji", path, "🎉" * 128, VALID),
        ("empty", path, "", BAD),
        ("space", path, " ", BAD),
        ("leading space", path, " id", BAD),
        ("trailing space", path, "id ", BAD),
        ("inner space", path, "i d", BAD),
        ("128 chars and a trailing space", path, "x" * 128 + " ", BAD),
    ]
    for space in UNICODE_SPACES:
        changes.append((f"inner {space!r}", path, f"i{space}d", BAD))
        changes.append((f"trailing {space!r}", path, f"id{space}", BAD))
        changes.append((f"leading {space!r}", path, f"{space}id", BAD))
    for space in PYTHON_ONLY_SPACES:
        changes.append((f"inner {space!r}", path, f"i{space}d", VALID))
        changes.append((f"trailing {space!r}", path, f"id{space}", VALID))
    changes.extend((f"inner {c!r}", path, f"i{c}d", PASS if c != "\x00" else VALID) for c in NOT_SPACES)
    return changes


def text_changes(path: str, max_length: int, min_length: int = 1) -> list[Change]:
    """A field with strip_whitespace and a length range (model name and version, source type)."""
    changes: list[Change] = [
        ("one char", path, "m", PASS),
        ("max length", path, "m" * max_length, PASS),
        ("max length + 1", path, "m" * (max_length + 1), BAD),
        ("max length of two-byte chars", path, "é" * max_length, PASS),
        ("max length + 1 of two-byte chars", path, "é" * (max_length + 1), BAD),
        ("empty", path, "", PASS if min_length == 0 else BAD),
        ("space", path, " ", BAD),
        ("inner space", path, "gpt 4o", PASS),
        ("leading space", path, " gpt", BAD),
        ("trailing space", path, "gpt ", BAD),
        ("max length with a trailing space", path, "m" * max_length + " ", BAD),
    ]
    for space in UNICODE_SPACES:
        changes.append((f"trailing {space!r}", path, f"gpt{space}", BAD))
        changes.append((f"leading {space!r}", path, f"{space}gpt", BAD))
        changes.append((f"inner {space!r}", path, f"g{space}pt", PASS))
    for space in PYTHON_ONLY_SPACES:
        changes.append((f"trailing {space!r}", path, f"gpt{space}", VALID))
        changes.append((f"leading {space!r}", path, f"{space}gpt", VALID))
        changes.append((f"inner {space!r}", path, f"g{space}pt", PASS))
    changes.extend((f"inner {c!r}", path, f"g{c}pt", VALID) for c in NOT_SPACES)
    return changes


def token_changes() -> list[Change]:
    changes: list[Change] = []
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        changes += [
            (f"{name} -1", name, -1, BAD),
            (f"{name} 10**12 + 1", name, 10**12 + 1, BAD),
            (f"{name} 2**62", name, 2**62, BAD),
            (f"{name} int64 min", name, INT64_MIN, BAD),
            (f"{name} int64 max", name, INT64_MAX, BAD),
        ]

    def tokens(prompt: int, completion: int, total: int, cached: int = 0, reasoning: int = 0) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
                "cached_tokens": cached, "reasoning_tokens": reasoning}  # fmt: skip

    big = 10**12
    changes += [
        ("no tokens", "*", tokens(0, 0, 0), PASS),
        ("10**12 tokens", "*", tokens(big, 0, big, cached=big), PASS),
        ("10**12 of each", "*", tokens(big // 2, big // 2, big, cached=big // 2, reasoning=big // 2), PASS),
        ("total over 10**12", "*", tokens(big, 1, big + 1), BAD),
        ("total = prompt + completion + 1", "*", tokens(10, 5, 16), BAD),
        ("total = prompt + completion - 1", "*", tokens(10, 5, 14), BAD),
        ("total 0, tokens used", "*", tokens(10, 5, 0), BAD),
        ("cached = prompt", "*", tokens(10, 5, 15, cached=10), PASS),
        ("cached > prompt", "*", tokens(10, 5, 15, cached=11), BAD),
        ("cached > prompt = 0", "*", tokens(0, 5, 5, cached=1), BAD),
        ("reasoning = completion", "*", tokens(10, 5, 15, reasoning=5), PASS),
        ("reasoning > completion", "*", tokens(10, 5, 15, reasoning=6), BAD),
        ("reasoning > completion = 0", "*", tokens(10, 0, 10, reasoning=1), BAD),
        ("a negative prompt balanced", "*", tokens(-1, 6, 5), BAD),
        ("a negative completion balanced", "*", tokens(6, -1, 5), BAD),
        ("an int64 sum wrapping", "*", tokens(2**62, 2**62, INT64_MIN), BAD),
        ("an int64 sum wrapping to a valid total", "*", tokens(INT64_MAX, INT64_MAX, -2), BAD),
        ("a negative cached", "*", tokens(10, 5, 15, cached=-1), BAD),
    ]
    return changes


def timestamp_changes(now: int) -> list[Change]:
    return [
        ("2000-01-01", "timestamp", EARLIEST_MS, PASS),
        ("a ms before 2000", "timestamp", EARLIEST_MS - 1, BAD),
        ("the epoch", "timestamp", 0, BAD),
        ("before the epoch", "timestamp", -1, BAD),
        ("year 1", "timestamp", -62135596800000, BAD),
        ("before year 1", "timestamp", -62135596800001, BAD),
        ("now", "timestamp", now, PASS),
        ("a day ahead", "timestamp", now + DAY_MS, PASS),
        ("a day and a minute ahead", "timestamp", now + DAY_MS + 60_000, BAD),
        ("a year ahead", "timestamp", now + 365 * DAY_MS, BAD),
        ("9999-12-31", "timestamp", MAX_DATETIME_MS, BAD),
        ("year 10000", "timestamp", MAX_DATETIME_MS + 1, BAD),
        ("int64 max", "timestamp", INT64_MAX, BAD),
        ("int64 min", "timestamp", INT64_MIN, BAD),
        ("ingested at the epoch", "ingested_at", 0, PASS),
        ("ingested before the epoch", "ingested_at", -1, PASS),
        ("ingested before 2000", "ingested_at", EARLIEST_MS - 1, PASS),
        ("ingested a year ahead", "ingested_at", now + 365 * DAY_MS, PASS),
        ("ingested year 1", "ingested_at", -62135596800000, PASS),
        ("ingested 9999-12-31", "ingested_at", MAX_DATETIME_MS, PASS),
        # Beyond the datetime range: see test_ingested_at_beyond_the_datetime_range_is_flagged.
    ]


def edge_changes(now: int) -> list[Change]:
    changes: list[Change] = []
    for path in ("id", "organization_id", "project_id", "user_id"):
        changes += [(f"{path}: {label}", p, value, want) for label, p, value, want in identifier_changes(path)]
    changes += [
        ("project_id null", "project_id", None, PASS),
        ("user_id null", "user_id", None, PASS),
        ("organization_id null", "organization_id", None, BAD),
        ("id null", "id", None, BAD),
    ]
    for path, max_length, min_length in (("model.name", 200, 1), ("model.version", 200, 0), ("source.type", 50, 1)):
        changes += [
            (f"{path}: {label}", p, value, want) for label, p, value, want in text_changes(path, max_length, min_length)
        ]
    changes += [
        ("model.version null", "model.version", None, PASS),
        ("model.name null", "model.name", None, BAD),
        ("provider openai", "provider", "openai", PASS),
        ("provider mistral", "provider", "mistral", PASS),
        ("provider OpenAI", "provider", "OpenAI", BAD),
        ("provider OPENAI", "provider", "OPENAI", BAD),
        ("provider with a leading space", "provider", " openai", BAD),
        ("provider with a trailing space", "provider", "openai ", BAD),
        ("provider with a trailing nbsp", "provider", "openai\u00a0", BAD),
        ("provider with a trailing \\x1c", "provider", "openai\x1c", BAD),
        ("provider unknown", "provider", "acme", BAD),
        ("provider empty", "provider", "", BAD),
        ("provider null", "provider", None, BAD),
        ("context_window null", "model.context_window", None, PASS),
        ("context_window 0", "model.context_window", 0, BAD),
        ("context_window 1", "model.context_window", 1, PASS),
        ("context_window 10**8", "model.context_window", 10**8, PASS),
        ("context_window 10**8 + 1", "model.context_window", 10**8 + 1, BAD),
        ("context_window -1", "model.context_window", -1, BAD),
        ("context_window int64 max", "model.context_window", INT64_MAX, BAD),
        ("latency null", "latency_ms", None, PASS),
        ("latency 0", "latency_ms", 0, PASS),
        ("latency -1", "latency_ms", -1, BAD),
        ("latency -2", "latency_ms", -2, BAD),
        ("latency a day", "latency_ms", 86_400_000, PASS),
        ("latency a day + 1", "latency_ms", 86_400_001, BAD),
        ("latency int64 min", "latency_ms", INT64_MIN, BAD),
    ]
    changes += token_changes()
    changes += timestamp_changes(now)
    changes += [
        ("no tags", "tags", [], PASS),
        ("50 tags", "tags", [f"t{i}" for i in range(50)], PASS),
        ("51 tags", "tags", [f"t{i}" for i in range(51)], BAD),
        ("50 equal tags", "tags", ["t"] * 50, PASS),
        ("51 equal tags", "tags", ["t"] * 51, BAD),
        ("a tag of 100 chars", "tags", ["a", "t" * 100], PASS),
        ("a tag of 101 chars", "tags", ["a", "t" * 101], BAD),
        ("a tag of 100 two-byte chars", "tags", ["é" * 100], PASS),
        ("a tag of 101 two-byte chars", "tags", ["é" * 101], BAD),
        ("an empty tag", "tags", ["a", ""], BAD),
        ("a blank tag", "tags", [" "], BAD),
        ("a tag with a leading space", "tags", [" t"], BAD),
        ("a tag with a trailing ideographic space", "tags", ["t\u3000"], BAD),
        ("a tag with a trailing \\x85", "tags", ["t\x85"], BAD),
        ("a tag with a trailing \\x1c", "tags", ["t\x1c"], VALID),
        ("a tag with an inner space", "tags", ["t t"], PASS),
        ("a null tag", "tags", ["a", None], BAD),
        ("no metadata", "metadata", {}, PASS),
        ("50 metadata keys", "metadata", {f"k{i}": "v" for i in range(50)}, PASS),
        ("51 metadata keys", "metadata", {f"k{i}": "v" for i in range(51)}, BAD),
        ("an empty metadata key", "metadata", {"": "v"}, BAD),
        ("a metadata key of 100 chars", "metadata", {"k" * 100: "v"}, PASS),
        ("a metadata key of 101 chars", "metadata", {"k" * 101: "v"}, BAD),
        ("a metadata key of 100 emoji", "metadata", {"🎉" * 100: "v"}, PASS),
        ("a metadata key of 101 emoji", "metadata", {"🎉" * 101: "v"}, BAD),
        ("a blank metadata key", "metadata", {" ": "v"}, PASS),
        ("a metadata value of 1000 chars", "metadata", {"k": "v" * 1000}, PASS),
        ("a metadata value of 1001 chars", "metadata", {"k": "v" * 1001}, BAD),
        ("a metadata value of 1000 two-byte chars", "metadata", {"k": "é" * 1000}, PASS),
        ("a metadata value of 1001 two-byte chars", "metadata", {"k": "é" * 1001}, BAD),
        ("an empty metadata value", "metadata", {"k": ""}, PASS),
        ("a padded metadata value", "metadata", {" k ": " v "}, PASS),
        ("a null metadata value", "metadata", {"k": None}, BAD),
        ("no source", "source", None, PASS),
        ("a source without endpoint", "source", {"type": "sdk", "endpoint": None}, PASS),
        ("a source with endpoint", "source", {"type": "api", "endpoint": "/v1/chat"}, PASS),
        ("an endpoint without source type", "source", {"type": None, "endpoint": "/v1/chat"}, BAD),
        ("an empty endpoint", "source", {"type": "api", "endpoint": ""}, PASS),
        ("a padded endpoint", "source", {"type": "api", "endpoint": " /v1 "}, PASS),
        ("an endpoint of 500 chars", "source", {"type": "api", "endpoint": "e" * 500}, PASS),
        ("an endpoint of 501 chars", "source", {"type": "api", "endpoint": "e" * 501}, BAD),
        ("an endpoint of 500 two-byte chars", "source", {"type": "api", "endpoint": "é" * 500}, PASS),
        ("an endpoint of 501 two-byte chars", "source", {"type": "api", "endpoint": "é" * 501}, BAD),
    ]
    return changes


def apply(record: Record, path: str, value: Any) -> None:
    if path == "*":  # several fields at once
        record.update(copy.deepcopy(value))
        return
    if path.startswith("source.") and record["source"] is None:
        record["source"] = {"type": "sdk", "endpoint": None}
    *parents, name = path.split(".")
    target = record
    for parent in parents:
        target = target[parent]
    target[name] = copy.deepcopy(value)


def changed(base: Record, changes: Sequence[Change]) -> Record:
    record = copy.deepcopy(base)
    for _, path, value, _ in changes:
        apply(record, path, value)
    return record


def bases(usage_event: EventFactory) -> list[Record]:
    """Valid single-event records (as ``row_record`` returns them) to change."""
    events = [
        usage_event(),
        usage_event(
            model={"name": "claude-3-5-sonnet", "version": "20241022", "context_window": 200_000},
            provider="anthropic",
            project_id=None,
            user_id=None,
            prompt_tokens=5000,
            completion_tokens=800,
            cached_tokens=5000,
            reasoning_tokens=800,
            latency_ms=1200,
            tags=[],
            metadata={},
            source={"type": "api", "endpoint": "/v1/messages"},
        ),
        usage_event(model="gpt-4o-mini", prompt_tokens=0, completion_tokens=0, cached_tokens=0, tags=["a", "b"]),
    ]
    return [event_record(event) for event in events]


# ---------------------------------------------------------------------------------------------
# The oracle and the property.


def verdict(record: Record) -> str | None:
    """None when the model accepts ``record`` and returns it unchanged; otherwise why not."""
    data = validation_input(record)
    try:
        event = UsageEvent.parse(data, PROVIDERS)
    except EventValidationError as exc:
        return f"rejected: {exc.field_errors}"
    dumped = event.model_dump()
    if dumped != data:
        diff = {k: (data.get(k), dumped.get(k)) for k in dumped.keys() | data.keys() if dumped.get(k) != data.get(k)}
        return f"changed (given, parsed): {diff}"
    return None


def assert_conservative(table: pa.Table, labels: Sequence[str], now: int) -> np.ndarray:
    """Every row the check passes is one the model accepts unchanged; returns the flags."""
    assert table.num_rows == len(labels)
    flags = rows_to_recheck(table, PROVIDERS, now)
    assert isinstance(flags, np.ndarray) and flags.dtype == np.bool_ and flags.shape == (table.num_rows,)
    slipped = []
    for index in range(table.num_rows):
        if not flags[index] and (why := verdict(row_record(table, index))) is not None:
            slipped.append(f"row {index} [{labels[index]}]: not flagged, but {why}"[:400])
    assert not slipped, f"{len(slipped)} rows passed rows_to_recheck that the model rejects or changes:\n" + "\n".join(
        slipped[:25]
    )
    return flags


# ---------------------------------------------------------------------------------------------
# Batches, by hand: batch_record only takes validated events.


def representable(record: Record) -> bool:
    """Whether a batch can hold the record (its columns have no null ids, times, numbers, tags
    or metadata values, and the organization is the batch's)."""
    required = ("id", "timestamp", "ingested_at", "organization_id", "prompt_tokens", "completion_tokens",
                "total_tokens", "cached_tokens", "reasoning_tokens")  # fmt: skip
    return (
        all(record[name] is not None for name in required)
        and None not in record["tags"]
        and None not in record["metadata"].values()
    )


def batch_of(records: Sequence[Record]) -> Record:
    """The ``UsageBatch`` record of single-event records of one organization."""
    strings: dict[str, int] = {}

    def ref(value: str | None) -> int:
        return -1 if value is None else strings.setdefault(value, len(strings))

    def source(record: Record, part: str) -> str | None:
        return None if record["source"] is None else record["source"][part]

    (organization,) = {r["organization_id"] for r in records}
    batch = {
        "organization_id": organization,
        "event_id": [r["id"] for r in records],
        "timestamp": [r["timestamp"] for r in records],
        "provider": [ref(r["provider"]) for r in records],
        "model": [ref(r["model"]["name"]) for r in records],
        "model_version": [ref(r["model"]["version"]) for r in records],
        "context_window": [r["model"]["context_window"] or 0 for r in records],
        "project_id": [ref(r["project_id"]) for r in records],
        "user_id": [ref(r["user_id"]) for r in records],
        **{
            name: [r[name] for r in records]
            for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
        },
        "latency_ms": [-1 if r["latency_ms"] is None else r["latency_ms"] for r in records],
        "tags": [[ref(tag) for tag in r["tags"]] for r in records],
        "metadata": [[ref(part) for item in r["metadata"].items() for part in item] for r in records],
        "source_type": [ref(source(r, "type")) for r in records],
        "source_endpoint": [ref(source(r, "endpoint")) for r in records],
        "ingested_at": [r["ingested_at"] for r in records],
    }
    batch["strings"] = list(strings)
    return batch


def decoded(batch: Record) -> Record:
    """The batch as the worker gets it: encoded by fastavro, read by the batch reader."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, BATCH, batch)
    return dict(read_batch(buffer.getvalue(), 0, BATCH))


def batch_tables(records: Sequence[Record], labels: Sequence[str]) -> list[tuple[pa.Table, list[str]]]:
    """One decoded-batch table per organization, with the labels of its rows."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if representable(record):
            groups.setdefault(record["organization_id"], []).append(index)
    tables = []
    for rows in groups.values():
        table = table_from_batch(decoded(batch_of([records[i] for i in rows])))
        tables.append((table, [labels[i] for i in rows]))
    return tables


# ---------------------------------------------------------------------------------------------
# Tests


def test_each_edge_alone_in_records(usage_event: EventFactory) -> None:
    """One change per row: flagged exactly where expected, and the oracle agrees with the labels."""
    now = now_ms()
    changes = edge_changes(now)
    base = bases(usage_event)[0]
    records = [changed(base, [change]) for change in changes]
    labels = [change[0] for change in changes]
    flags = assert_conservative(table_from_records(records), labels, now)

    wrong = []
    for (label, _, _, want), record, flag in zip(changes, records, flags, strict=True):
        why = verdict(record)
        if want == BAD and why is None:
            wrong.append(f"[{label}] expected the model to reject or change it, it accepts it as is")
        if want in (PASS, VALID) and why is not None:
            wrong.append(f"[{label}] expected valid, but {why}")
        if want == PASS and flag:
            wrong.append(f"[{label}] a plainly valid row is flagged (a needless recheck)")
        if want == BAD and not flag:
            wrong.append(f"[{label}] an invalid row is not flagged")
    assert not wrong, "\n".join(wrong)
    assert len(changes) > 250


def test_each_edge_alone_in_decoded_batches(usage_event: EventFactory) -> None:
    now = now_ms()
    changes = edge_changes(now)
    base = bases(usage_event)[1]
    records = [changed(base, [change]) for change in changes]
    labels = [change[0] for change in changes]
    tables = batch_tables(records, labels)
    assert sum(table.num_rows for table, _ in tables) > 230
    flagged = 0
    for table, row_labels in tables:
        flags = assert_conservative(table, row_labels, now)
        flagged += int(flags.sum())
    assert flagged > 100


def space_like_characters() -> list[str]:
    """Every character Python calls whitespace, and every separator, control and format
    character (the candidates for what pydantic-core's strip and ``\\s`` might see)."""
    return [
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if c.isspace() or unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cc", "Cf")
    ]


def test_every_space_like_character(usage_event: EventFactory) -> None:
    """Python's whitespace and Rust's (pydantic-core) differ: whatever the model strips or refuses
    in an identifier, a name or a tag must be flagged."""
    now = now_ms()
    base = bases(usage_event)[1]
    records, labels = [], []
    for c in space_like_characters():
        for label, path, value in (
            ("id inner", "id", f"i{c}d"),
            ("id trailing", "id", f"id{c}"),
            ("organization leading", "organization_id", f"{c}org"),
            ("user inner", "user_id", f"u{c}1"),
            ("model trailing", "model.name", f"gpt{c}"),
            ("version leading", "model.version", f"{c}v1"),
            ("source type trailing", "source.type", f"sdk{c}"),
            ("tag leading", "tags", [f"{c}t"]),
            ("provider trailing", "provider", f"openai{c}"),
        ):
            records.append(changed(base, [("", path, value, "")]))
            labels.append(f"{label} U+{ord(c):04X}")
    assert len(records) > 1000
    flags = assert_conservative(table_from_records(records), labels, now)
    assert 0 < flags.sum() < len(flags)
    for table, row_labels in batch_tables(records, labels):
        assert_conservative(table, row_labels, now)


def test_batch_null_conventions(usage_event: EventFactory) -> None:
    """In a batch 0 and -1 stand for a null context window and latency: valid, not flagged."""
    now = now_ms()
    base = bases(usage_event)[0]
    records = [
        changed(base, [("", "model.context_window", 0, ""), ("", "latency_ms", -1, "")]),
        changed(base, [("", "model.context_window", None, ""), ("", "latency_ms", None, "")]),
        changed(base, [("", "latency_ms", -2, "")]),
        changed(base, [("", "model.context_window", -1, "")]),
    ]
    ((table, labels),) = batch_tables(records, ["0 and -1", "null", "latency -2", "context_window -1"])
    flags = assert_conservative(table, labels, now)
    assert flags.tolist() == [False, False, True, True]
    assert row_record(table, 0)["model"]["context_window"] is None and row_record(table, 0)["latency_ms"] is None


def random_rows(usage_event: EventFactory, now: int, count: int, seed: int) -> tuple[list[Record], list[str]]:
    """Valid bases with 0 to 4 random edge changes each (several organizations)."""
    rng = random.Random(seed)
    changes = edge_changes(now)
    organizations = [c for c in changes if c[1] == "organization_id" and c[2] is not None]
    records, labels = [], []
    for base in bases(usage_event) * (count // 3 + 1):
        picked = rng.sample(changes, rng.choice((0, 1, 1, 2, 3, 4)))
        if rng.random() < 0.5:
            picked.append(rng.choice(organizations))  # a batch per organization
        records.append(changed(base, picked))
        labels.append(" + ".join(label for label, *_ in picked) or "valid base")
    return records[:count], labels[:count]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_rows_in_records(usage_event: EventFactory, seed: int) -> None:
    now = now_ms()
    records, labels = random_rows(usage_event, now, 600, seed)
    flags = assert_conservative(table_from_records(records), labels, now)
    assert 0 < flags.sum() < len(flags)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_random_rows_in_decoded_batches(usage_event: EventFactory, seed: int) -> None:
    now = now_ms()
    records, labels = random_rows(usage_event, now, 600, seed)
    tables = batch_tables(records, labels)
    assert len(tables) > 10
    flagged = [assert_conservative(table, row_labels, now) for table, row_labels in tables]
    total = np.concatenate(flagged)
    assert 0 < total.sum() < len(total)


def test_batch_from_plain_lists(usage_event: EventFactory) -> None:
    """table_from_batch also takes the record as fastavro gives it (lists, not numpy)."""
    now = now_ms()
    records, labels = random_rows(usage_event, now, 300, 7)
    rows = [(r | {"organization_id": "org-test"}, label) for r, label in zip(records, labels, strict=True)]
    kept = [(r, label) for r, label in rows if representable(r)]
    table = table_from_batch(batch_of([r for r, _ in kept]))
    flags = assert_conservative(table, [label for _, label in kept], now)
    assert 0 < flags.sum() < len(flags)


def test_sliced_and_chunked_tables(usage_event: EventFactory) -> None:
    """Slices (offsets into the buffers) and several chunks (several dictionaries)."""
    now = now_ms()
    records, labels = random_rows(usage_event, now, 400, 8)
    table = table_from_records(records)
    flags = assert_conservative(table, labels, now)
    for start, stop in ((1, 399), (7, 250), (133, 134), (200, 400)):
        sliced = assert_conservative(table.slice(start, stop - start), labels[start:stop], now)
        assert sliced.tolist() == flags[start:stop].tolist()
    chunked = pa.concat_tables([table.slice(0, 150), table.slice(150, 100), table.slice(250)])
    assert chunked.column("tags").num_chunks == 3
    assert assert_conservative(chunked, labels, now).tolist() == flags.tolist()

    batches = batch_tables(records, labels)
    combined = pa.concat_tables([t for t, _ in batches])
    combined_labels = [label for _, row_labels in batches for label in row_labels]
    together = assert_conservative(combined, combined_labels, now)
    alone = np.concatenate([rows_to_recheck(t, PROVIDERS, now) for t, _ in batches])
    assert together.tolist() == alone.tolist()
    middle = combined.slice(5, combined.num_rows - 10)
    assert assert_conservative(middle, combined_labels[5:-5], now).tolist() == alone[5:-5].tolist()


def test_empty_table() -> None:
    flags = rows_to_recheck(table_from_records([]), PROVIDERS, now_ms())
    assert flags.dtype == np.bool_ and flags.shape == (0,)


def test_null_organization_is_flagged(usage_event: EventFactory) -> None:
    now = now_ms()
    base = bases(usage_event)[0]
    records = [base, changed(base, [("", "organization_id", None, "")])]
    flags = assert_conservative(table_from_records(records), ["valid", "null organization"], now)
    assert flags.tolist() == [False, True]


def test_endpoint_without_source_type_is_flagged(usage_event: EventFactory) -> None:
    now = now_ms()
    base = bases(usage_event)[1]
    records = [base, changed(base, [("", "source", {"type": None, "endpoint": "/v1"}, "")])]
    for table, labels in [
        (table_from_records(records), ["valid", "endpoint only"]),
        *batch_tables(records, ["valid", "endpoint only"]),
    ]:
        assert assert_conservative(table, labels, now).tolist() == [False, True]


def test_a_check_made_now_is_not_fooled_by_a_later_now(usage_event: EventFactory) -> None:
    """The check's ``now`` is earlier than the model's: a day ahead of it stays valid."""
    now = now_ms()
    base = bases(usage_event)[0]
    records = [
        changed(base, [("", "timestamp", now + DAY_MS, "")]),
        changed(base, [("", "timestamp", now + DAY_MS + 1, "")]),
    ]
    flags = assert_conservative(table_from_records(records), ["a day ahead", "a day and a ms ahead"], now)
    assert flags.tolist() == [False, True]


def test_ingested_at_beyond_the_datetime_range_is_flagged(usage_event: EventFactory) -> None:
    """An ``ingested_at`` no datetime can hold fails validation, so the check must flag it."""
    now = now_ms()
    base = bases(usage_event)[0]
    slipped = []
    for ingested_at in (MAX_DATETIME_MS + 1, 2**62, INT64_MAX, -62135596800001, -(2**62), INT64_MIN):
        record = changed(base, [("", "ingested_at", ingested_at, "")])
        assert verdict(record) is not None, ingested_at  # the model rejects it (field "ingested_at")
        for kind, table in (
            ("records", table_from_records([record])),
            ("batch", table_from_batch(decoded(batch_of([record])))),
        ):
            if not rows_to_recheck(table, PROVIDERS, now)[0]:
                slipped.append(f"ingested_at={ingested_at} ({kind}): {verdict(row_record(table, 0))}")
    assert not slipped, (
        "BUG in schemas/usage_check.py: rows_to_recheck checks ingested_at for null only, so an ingested_at "
        "outside the datetime range (years 1-9999) passes unflagged although UsageEvent.parse rejects it:\n"
        + "\n".join(slipped)
    )


def test_repeated_metadata_key_in_a_batch_row_is_flagged(usage_event: EventFactory) -> None:
    """A batch can repeat a key in one row; the model keeps one value, so it must see the row."""
    from schemas.columns import batch_record

    events = [usage_event(metadata={"a": "1"}) for _ in range(3)]
    record = batch_record(events)
    strings: list[str] = record["strings"]
    strings.extend(["a", "2"])
    record["metadata"][1] = [strings.index("a"), strings.index("1"), len(strings) - 2, len(strings) - 1]
    flags = rows_to_recheck(table_from_batch(record), allowed_providers(), now_ms())
    assert flags.tolist() == [False, True, False]
