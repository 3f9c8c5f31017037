"""The vectorized batch reader (schemas/batch_reader.py) decodes exactly what fastavro decodes.

Every test encodes records (with fastavro, or by hand in the block forms other Avro writers
produce), decodes them with :func:`read_batch` and with ``fastavro.schemaless_reader``, and
compares field by field: numpy arrays against lists, ``(offsets, flat)`` against lists of
lists. Bad bytes must raise :class:`DecodeError`, never another exception.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import numpy as np
import pytest

from schemas.batch_reader import decode_varints, read_batch, supports
from schemas.columns import batch_record, millis
from schemas.errors import DecodeError
from schemas.provider import KNOWN_PROVIDERS
from schemas.registry import parsed_schema, schema_text
from schemas.usage import UsageEvent

EventFactory = Callable[..., UsageEvent]

BATCH = parsed_schema(schema_text("usage_batch"))
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)


# ---------------------------------------------------------------------------------------------
# Helpers: the field kinds of a schema, encoding, the two decoders and the comparison.


def kind_of(avro_type: Any) -> str:
    """``string``, ``int``, ``strings``, ``ints`` or ``int_lists`` of a (parsed) field type."""
    if isinstance(avro_type, dict) and avro_type.get("type") != "array":
        avro_type = avro_type["type"]
    if avro_type == "string":
        return "string"
    if avro_type in ("int", "long"):
        return "int"
    assert isinstance(avro_type, dict), avro_type
    items = kind_of(avro_type["items"])
    return {"string": "strings", "int": "ints", "ints": "int_lists"}[items]


def kinds(schema: Any) -> dict[str, str]:
    return {field["name"]: kind_of(field["type"]) for field in schema["fields"]}


def record_schema(name: str, fields: list[tuple[str, Any]]) -> Any:
    return parsed_schema(
        json.dumps({"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]})
    )


def fastavro_bytes(record: dict[str, Any], schema: Any = BATCH) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def fastavro_read(data: bytes, schema: Any = BATCH) -> dict[str, Any]:
    buffer = io.BytesIO(data)
    record = fastavro.schemaless_reader(buffer, schema, None)
    assert buffer.tell() == len(data), f"fastavro left {len(data) - buffer.tell()} bytes"
    assert isinstance(record, dict)
    return record


def as_lists(value: Any, kind: str) -> Any:
    """A column of :func:`read_batch` as plain Python data, checking its representation."""
    if kind == "string":
        assert type(value) is str, f"expected str, got {type(value)}"
        return value
    if kind == "int":
        assert type(value) is int, f"expected int, got {type(value)}"
        return value
    if kind == "strings":
        assert type(value) is list, f"expected list, got {type(value)}"
        assert all(type(item) is str for item in value)
        return value
    if kind == "ints":
        assert isinstance(value, np.ndarray), f"expected ndarray, got {type(value)}"
        assert value.dtype == np.int64 and value.ndim == 1, value.dtype
        return value.tolist()
    assert kind == "int_lists"
    assert isinstance(value, tuple) and len(value) == 2, f"expected (offsets, flat), got {type(value)}"
    offsets, flat = value
    assert isinstance(offsets, np.ndarray) and isinstance(flat, np.ndarray)
    assert offsets.dtype == np.int64 and flat.dtype == np.int64, (offsets.dtype, flat.dtype)
    assert offsets.ndim == 1 and flat.ndim == 1
    assert len(offsets) >= 1 and offsets[0] == 0
    assert (np.diff(offsets) >= 0).all(), offsets
    assert offsets[-1] == len(flat), (offsets[-1], len(flat))
    bounds = offsets.tolist()
    items: list[int] = flat.tolist()
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def assert_reads_like_fastavro(data: bytes, schema: Any = BATCH, expected: dict[str, Any] | None = None) -> None:
    """read_batch(data) == fastavro's decode of data (== ``expected`` when given)."""
    theirs = fastavro_read(data, schema)
    ours = read_batch(data, 0, schema)
    assert list(ours) == list(theirs), "fields differ (names or order)"
    for name, kind in kinds(schema).items():
        assert as_lists(ours[name], kind) == theirs[name], f"field {name!r} differs from fastavro"
    if expected is not None:
        assert theirs == expected, "fastavro does not read back what was written"


def round_trip(record: dict[str, Any], schema: Any = BATCH) -> None:
    assert_reads_like_fastavro(fastavro_bytes(record, schema), schema, record)


# ---------------------------------------------------------------------------------------------
# Hand-written Avro: zigzag varints and arrays in several blocks.


def varint(value: int, width: int = 0) -> bytes:
    """The zigzag varint of ``value``; ``width`` > its natural size pads it (overlong form)."""
    assert INT64_MIN <= value <= INT64_MAX
    zigzag = value * 2 if value >= 0 else -value * 2 - 1
    out = bytearray()
    while zigzag >= 0x80:
        out.append(zigzag & 0x7F | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    while len(out) < width:
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


def text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return varint(len(encoded)) + encoded


BLOCK_STYLES = ("one", "positive", "negative", "mixed", "single_items")


def array(items: list[bytes], style: str, rng: random.Random) -> bytes:
    """Encoded items as an Avro array in blocks of ``style``: one positive block (what fastavro
    writes), random positive blocks, random blocks with negative counts and byte sizes, a mix,
    or one block per item."""
    out = bytearray()
    position = 0
    while position < len(items):
        left = len(items) - position
        if style == "one":
            size = left
        elif style == "single_items":
            size = 1
        else:
            size = rng.randint(1, left)
        body = b"".join(items[position : position + size])
        negative = style == "negative" or (style == "mixed" and rng.random() < 0.5)
        out += varint(-size) + varint(len(body)) if negative else varint(size)
        out += body
        position += size
    out += varint(0)
    return bytes(out)


def hand_encode(record: dict[str, Any], schema: Any, style: str, rng: random.Random) -> bytes:
    out = bytearray()
    for name, kind in kinds(schema).items():
        value = record[name]
        if kind == "string":
            out += text(value)
        elif kind == "int":
            out += varint(value)
        elif kind == "strings":
            out += array([text(v) for v in value], style, rng)
        elif kind == "ints":
            out += array([varint(v) for v in value], style, rng)
        else:
            out += array([array([varint(v) for v in row], style, rng) for row in value], style, rng)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Value generators.

LONG_EDGES = (
    0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, INT32_MAX, INT32_MIN, 2**35, -(2**35),
    2**56 - 1, 2**62, -(2**62), INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
)  # fmt: skip
INT_EDGES = (0, 1, -1, 63, -64, 64, 127, 128, 8191, 8192, 2**20, INT32_MAX, INT32_MIN)

# One-byte-length fast path: a string under 64 bytes; 63/64 bytes sit on the boundary.
STRING_EDGES = (
    "", " ", "a", "x" * 63, "x" * 64, "x" * 65, "y" * 200, "é" * 31 + "a", "é" * 32, "é" * 31,
    "日本語のテキスト", "🎉" * 16, "🎉" * 15 + "abc", "z" * 127, "z" * 128, "\u00a0\u3000", "\x00", "e\u0301",
)  # fmt: skip
ALPHABET = "abcdefXYZ0123 -_.:/éüß日本🎉\u00a0\u2003"


def random_long(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(LONG_EDGES)
    if roll < 0.6:
        return rng.randint(-200, 200)
    bits = rng.randint(1, 63)  # every varint length from 1 to 10 bytes
    return rng.randint(-(2**bits), 2**bits - 1)


def random_int(rng: random.Random) -> int:
    if rng.random() < 0.3:
        return rng.choice(INT_EDGES)
    bits = rng.randint(1, 31)
    return rng.randint(-(2**bits), 2**bits - 1)


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(STRING_EDGES)
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice((0, 1, 5, 20, 40, 62, 63, 64, 70, 150))))


def random_value(kind: str, rng: random.Random, rows: int) -> Any:
    if kind == "string":
        return random_string(rng)
    if kind == "int":
        return random_long(rng)
    if kind == "strings":
        return [random_string(rng) for _ in range(rows)]
    if kind == "ints":
        return [random_long(rng) for _ in range(rows)]
    return [[random_int(rng) for _ in range(rng.choice((0, 0, 1, 2, 3, 10, 70)))] for _ in range(rows)]


def random_record(schema: Any, rng: random.Random) -> dict[str, Any]:
    """Any record of ``schema`` (the batch's columns need not agree: the reader does not care)."""
    rows = rng.choice((0, 1, 2, 3, 7, 40, 130))
    return {
        name: random_value(kind, rng, rng.choice((rows, rows, rng.randint(0, 9))))
        for name, kind in kinds(schema).items()
    }


def empty_batch() -> dict[str, Any]:
    """A batch with every array empty (batch_record refuses to build one)."""
    return {name: ("org-empty" if kind == "string" else []) for name, kind in kinds(BATCH).items()}


def edge_batch() -> dict[str, Any]:
    """A hand-made batch with edge values in every column."""
    strings = [*STRING_EDGES, *(f"tag-{i}" for i in range(300))]  # indices past 63: 2-byte varints
    size = len(LONG_EDGES)
    record: dict[str, Any] = {
        "organization_id": "организация-🎉" * 5,
        "strings": strings,
        "event_id": [STRING_EDGES[i % len(STRING_EDGES)] for i in range(size)],
    }
    for name, kind in kinds(BATCH).items():
        if kind == "ints" and name not in record:
            # Longs and ints alike: the wire form is the same, fastavro does not range-check.
            record[name] = (
                list(LONG_EDGES)
                if "tokens" in name or name in ("timestamp", "ingested_at")
                else [(i * 37) % len(strings) - (1 if i % 5 == 0 else 0) for i in range(size)]
            )
    record["tags"] = [
        [] if i % 3 == 0 else list(range(i * 20 % len(strings), min(len(strings), i * 20 % len(strings) + i * 7)))
        for i in range(size)
    ]
    record["tags"][1] = list(range(len(strings)))  # many tags in one row
    record["metadata"] = [[] if i % 2 else [i, i + 1, INT32_MAX, INT32_MIN] for i in range(size)]
    assert set(record) == set(kinds(BATCH))
    return record


def random_events(rng: random.Random, usage_event: EventFactory, count: int) -> list[UsageEvent]:
    """Valid usage events of one organization, every optional field varied."""
    now = datetime.now(UTC)
    organization = rng.choice(("org-a", "org-" + "b" * 120, "组织-1", "o"))
    events = []
    for _ in range(count):
        prompt = rng.choice((0, 1, 63, 64, 10**6, 10**12 // 2, rng.randint(0, 10**12 // 2)))
        completion = rng.choice((0, 1, 8192, rng.randint(0, 10**12 // 2)))
        tags = [
            rng.choice(("a", "prod", "é" * 40, "日本", "t" * 100, f"t{rng.randint(0, 99)}"))
            for _ in range(rng.choice((0, 1, 3, 50)))
        ]
        metadata = {
            f"k{j}-{rng.choice(('x', 'é', '🎉'))}": random_string(rng) or "v" for j in range(rng.choice((0, 1, 4, 50)))
        }
        events.append(
            usage_event(
                id=rng.choice((f"evt-{rng.getrandbits(64):x}", "é" * 64, "x" * 128, "🎉")),
                timestamp=(now - timedelta(milliseconds=rng.randint(-86_000_000, 7 * 10**11))).isoformat(),
                provider=rng.choice(sorted(KNOWN_PROVIDERS)),
                organization_id=organization,
                model={
                    "name": rng.choice(("gpt-4o", "claude-3-5-sonnet", "m" * 200, "模型")),
                    "version": rng.choice((None, "", "2024-08-06", "v" * 200)),
                    "context_window": rng.choice((None, 1, 8192, 100_000_000)),
                },
                project_id=rng.choice((None, "proj-1", "p" * 128)),
                user_id=rng.choice((None, "user-1", "ユーザー")),
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=rng.randint(0, prompt),
                reasoning_tokens=rng.randint(0, completion),
                latency_ms=rng.choice((None, 0, 1, 850, 86_400_000)),
                tags=tags,
                metadata=metadata,
                source=rng.choice((None, {"type": "sdk"}, {"type": "api", "endpoint": "/v1/chat/completions"})),
                ingested_at=datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randint(0, 10**12)),
            )
        )
    return events


# ---------------------------------------------------------------------------------------------
# Equal to fastavro on what fastavro writes.


def test_random_batches_of_events(usage_event: EventFactory) -> None:
    rng = random.Random(20250115)
    for _ in range(60):
        events = random_events(rng, usage_event, rng.choice((1, 2, 5, 30)))
        record = batch_record(events)
        round_trip(record)
        decoded = read_batch(fastavro_bytes(record), 0, BATCH)
        assert as_lists(decoded["timestamp"], "ints") == [millis(e.timestamp) for e in events]


def test_random_records_of_the_batch_schema() -> None:
    rng = random.Random(1)
    for _ in range(150):
        round_trip(random_record(BATCH, rng))


def test_empty_batch() -> None:
    record = empty_batch()
    round_trip(record)
    decoded = read_batch(fastavro_bytes(record), 0, BATCH)
    assert decoded["organization_id"] == "org-empty"
    assert as_lists(decoded["tags"], "int_lists") == []
    assert as_lists(decoded["strings"], "strings") == []


def test_edge_batch() -> None:
    round_trip(edge_batch())


@pytest.mark.parametrize("value", LONG_EDGES)
def test_every_long_edge_in_every_numeric_column(value: int) -> None:
    record = empty_batch()
    for name, kind in kinds(BATCH).items():
        if kind == "ints":
            record[name] = [value, -value if value != INT64_MIN else INT64_MAX, value]
        elif kind == "int_lists":
            record[name] = [[], [value, value], []]
    round_trip(record)


@pytest.mark.parametrize("size", [0, 1, 62, 63, 64, 65, 127, 128, 200, 8191, 8192, 20_000])
def test_string_sizes_around_the_one_byte_length(size: int) -> None:
    record = empty_batch()
    ascii_text, wide = "s" * size, ("é" * (size // 2) + "a" * (size % 2))  # same byte size
    assert len(wide.encode()) == size
    record["organization_id"] = ascii_text
    record["strings"] = [ascii_text, wide, "", ascii_text + "!", wide]
    record["event_id"] = [wide, ascii_text]
    round_trip(record)


def test_empty_and_huge_tag_lists() -> None:
    record = empty_batch()
    record["strings"] = [f"t{i}" for i in range(5000)]
    record["event_id"] = ["a", "b", "c", "d"]
    record["tags"] = [[], list(range(5000)), [], [4999, 0, 63, 64, 8191, 8192]]
    record["metadata"] = [[], [], [0, 1] * 200, []]
    round_trip(record)


def test_only_empty_rows_in_nested_columns() -> None:
    record = empty_batch()
    record["tags"] = [[]] * 100
    record["metadata"] = [[] for _ in range(3)]
    round_trip(record)


def test_read_from_a_position() -> None:
    """The record may start after a header (the Confluent wire format's 5 bytes)."""
    rng = random.Random(2)
    for _ in range(20):
        record = random_record(BATCH, rng)
        body = fastavro_bytes(record)
        prefix = bytes(rng.randrange(256) for _ in range(rng.choice((1, 5, 17))))
        ours = read_batch(prefix + body, len(prefix), BATCH)
        for name, kind in kinds(BATCH).items():
            assert as_lists(ours[name], kind) == record[name], name


SCHEMAS = {
    "strings_only": record_schema("S", [("a", "string"), ("b", {"type": "array", "items": "string"}), ("c", "string")]),
    "numbers_only": record_schema(
        "N",
        [
            ("n", "long"),
            ("xs", {"type": "array", "items": "long"}),
            ("m", "int"),
            ("xss", {"type": "array", "items": {"type": "array", "items": "long"}}),
            ("ys", {"type": "array", "items": "int"}),
        ],
    ),
    "scalars_between_arrays": record_schema(
        "M",
        [
            ("s", {"type": "array", "items": "string"}),
            ("t", "string"),
            ("a", {"type": "array", "items": {"type": "array", "items": "int"}}),
            ("n", "long"),
            ("b", {"type": "array", "items": {"type": "array", "items": "int"}}),
            ("m", {"type": "long", "logicalType": "timestamp-millis"}),
        ],
    ),
    "logical_types_kept": fastavro.parse_schema(json.loads(schema_text("usage_batch"))),
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_other_supported_schemas(name: str) -> None:
    schema = SCHEMAS[name]
    assert supports(schema)
    rng = random.Random(name)
    for _ in range(60):
        record = random_record(schema, rng)
        if name == "logical_types_kept":
            # fastavro would read the timestamps back as datetimes: compare with the plain schema.
            data = fastavro_bytes(record, BATCH)
            ours = read_batch(data, 0, schema)
            assert {n: as_lists(ours[n], kind) for n, kind in kinds(schema).items()} == fastavro_read(data) == record
        else:
            round_trip(record, schema)


# ---------------------------------------------------------------------------------------------
# The block forms other writers produce.


@pytest.mark.parametrize("style", BLOCK_STYLES)
def test_arrays_in_blocks(style: str) -> None:
    rng = random.Random(style)
    for _ in range(60):
        record = random_record(BATCH, rng) if rng.random() < 0.7 else edge_batch()
        data = hand_encode(record, BATCH, style, rng)
        assert_reads_like_fastavro(data, BATCH, expected=record)


@pytest.mark.parametrize("style", BLOCK_STYLES)
def test_arrays_in_blocks_of_other_schemas(style: str) -> None:
    rng = random.Random(f"other-{style}")
    for name, schema in sorted(SCHEMAS.items()):
        if name == "logical_types_kept":
            continue
        for _ in range(25):
            record = random_record(schema, rng)
            assert_reads_like_fastavro(hand_encode(record, schema, style, rng), schema, expected=record)


def test_blocks_written_by_hand() -> None:
    """Explicit bytes: strings, longs and nested ints each in two blocks, one negative."""
    data = (
        text("org")
        + varint(2) + text("a") + text("é" * 40)  # strings: a positive block of 2...
        + varint(-1) + varint(len(text("x" * 64))) + text("x" * 64)  # ...a negative block of 1
        + varint(0)
        + varint(-2) + varint(len(text("e1") + text(""))) + text("e1") + text("") + varint(0)  # event_id
        + varint(1) + varint(INT64_MAX) + varint(-1) + varint(10) + varint(INT64_MIN) + varint(0)  # timestamp
    )  # fmt: skip
    expected: dict[str, Any] = {
        "organization_id": "org",
        "strings": ["a", "é" * 40, "x" * 64],
        "event_id": ["e1", ""],
        "timestamp": [INT64_MAX, INT64_MIN],
    }
    rest = bytearray()
    for name, kind in list(kinds(BATCH).items())[4:]:
        if kind == "ints":
            rest += varint(1) + varint(7) + varint(-1) + varint(1) + varint(-8) + varint(0)
            expected[name] = [7, -8]
        else:
            # Row 0: [1, 2] then [3] (second block negative); row 1: empty.
            row0 = varint(2) + varint(1) + varint(2) + varint(-1) + varint(1) + varint(3) + varint(0)
            rest += varint(-2) + varint(len(row0) + 1) + row0 + varint(0) + varint(0)
            expected[name] = [[1, 2, 3], []]
    assert_reads_like_fastavro(data + bytes(rest), BATCH, expected=expected)


def test_overlong_varints() -> None:
    """Padded (non-minimal) varints of up to 10 bytes are still numbers."""
    rng = random.Random(3)
    for _ in range(50):
        record = random_record(BATCH, rng)
        plain = fastavro_bytes(record)
        # Re-encode with every varint padded to 10 bytes where it fits: block counts and items.
        padded = bytearray(text(record["organization_id"]))
        for name, kind in list(kinds(BATCH).items())[1:]:
            values = record[name]
            if kind == "strings":
                padded += (
                    varint(len(values), 10) + b"".join(text(v) for v in values) + varint(0, 10)
                    if values
                    else varint(0, 10)
                )
            elif kind == "ints":
                padded += (
                    varint(len(values), 10) + b"".join(varint(v, 10) for v in values) if values else b""
                ) + varint(0, 3)
            else:
                rows = [
                    (varint(len(r), 4) + b"".join(varint(v, 10) for v in r) if r else b"") + varint(0, 2)
                    for r in values
                ]
                padded += (
                    varint(-len(values), 10) + varint(len(b"".join(rows))) + b"".join(rows) if values else b""
                ) + varint(0)
        assert len(padded) > len(plain)
        assert_reads_like_fastavro(bytes(padded), BATCH, expected=record)


def test_decode_varints() -> None:
    values = [*LONG_EDGES, *range(-300, 300)]
    data = np.frombuffer(b"".join(varint(v) for v in values), dtype=np.uint8)
    assert decode_varints(data).tolist() == values
    assert decode_varints(np.frombuffer(varint(5, 10) + varint(-5, 2), dtype=np.uint8)).tolist() == [5, -5]


# ---------------------------------------------------------------------------------------------
# Errors: DecodeError and nothing else.


def messages() -> Iterator[bytes]:
    rng = random.Random(4)
    yield fastavro_bytes(empty_batch())
    yield fastavro_bytes(edge_batch())
    for style in BLOCK_STYLES:
        yield hand_encode(random_record(BATCH, rng), BATCH, style, rng)
    for _ in range(5):
        record = random_record(BATCH, rng)
        record["tags"] = [[], [1, 2], [3]]
        yield fastavro_bytes(record)


def test_truncation_fails() -> None:
    """Every prefix of a small message, and of a large one its first and last 200 cuts and 300 more."""
    rng = random.Random(6)
    for data in messages():
        ends = list(range(len(data)))
        if len(data) > 1500:
            ends = sorted({*ends[:200], *ends[-200:], *rng.sample(ends, 300)})
        for end in ends:
            with pytest.raises(DecodeError):
                read_batch(data[:end], 0, BATCH)


@pytest.mark.parametrize("suffix", [b"\x00", b"\x02", b"\x01", b"\x80", b"\xff\x01", b"\x00\x00\x00", b"garbage"])
def test_trailing_bytes_fail(suffix: bytes) -> None:
    for data in messages():
        with pytest.raises(DecodeError):
            read_batch(data + suffix, 0, BATCH)


def minimal_batch(org: bytes = text("org"), strings: bytes = varint(0), event_ids: bytes = varint(0)) -> bytes:
    """An empty batch with its three string fields given as raw bytes."""
    numeric = len(BATCH["fields"]) - 3
    return org + strings + event_ids + varint(0) * numeric


def test_minimal_batch_reads() -> None:
    assert_reads_like_fastavro(minimal_batch(), BATCH, expected={**empty_batch(), "organization_id": "org"})


INVALID_UTF8 = (b"\xff", b"\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a" * 70 + b"\xfe")


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_fails(bad: bytes) -> None:
    raw = varint(len(bad)) + bad
    cases = [
        minimal_batch(org=raw),
        minimal_batch(strings=varint(2) + text("ok") + raw + varint(0)),  # short: the inline path
        minimal_batch(strings=varint(-1) + varint(len(raw)) + raw + varint(0)),
        minimal_batch(event_ids=varint(1) + raw + varint(0)),
        minimal_batch(strings=varint(1) + varint(len(b"x" * 100 + bad)) + b"x" * 100 + bad + varint(0)),  # long
    ]
    for data in cases:
        with pytest.raises(DecodeError, match="UTF-8"):
            read_batch(data, 0, BATCH)


ELEVEN_BYTES = b"\x80" * 10 + b"\x00"  # zero, but longer than any long


def test_numbers_longer_than_ten_bytes_fail() -> None:
    fields = len(BATCH["fields"])
    cases = [
        ELEVEN_BYTES + b"org" + minimal_batch()[4:],  # the organization's length
        minimal_batch(strings=ELEVEN_BYTES),  # a block count of strings
        minimal_batch(strings=varint(1) + ELEVEN_BYTES + varint(0)),  # a string's length (not inline)
        minimal_batch(event_ids=varint(-1) + ELEVEN_BYTES + text("e") + varint(0)),  # a block's byte size
        minimal_batch()[: -(fields - 3)] + ELEVEN_BYTES + varint(0) * (fields - 4),  # a numeric block count
        minimal_batch()[: -(fields - 3)] + varint(1) + b"\xff" * 10 + b"\x01" + varint(0) + varint(0) * (fields - 4),
        minimal_batch() + ELEVEN_BYTES,  # trailing
    ]
    for data in cases:
        with pytest.raises(DecodeError, match="longer than 10 bytes"):
            read_batch(data, 0, BATCH)
    # Ten bytes are still a number.
    ok = minimal_batch()[: -(fields - 3)] + varint(1) + varint(0, 10) + varint(0) + varint(0) * (fields - 4)
    assert as_lists(read_batch(ok, 0, BATCH)["timestamp"], "ints") == [0]


def test_negative_and_overrunning_lengths_fail() -> None:
    fields = len(BATCH["fields"])
    numbers = varint(0) * (fields - 3)
    cases = [
        varint(-1) + b"org" + varint(0) * (fields - 1),
        text("org") + varint(1) + varint(-3) + b"abc" + varint(0) + varint(0) + numbers,
        text("org") + varint(1) + varint(200) + b"abc",
        text("org") + varint(1) + varint(20) + b"abc",  # inline path
        text("org") + varint(3) + text("a"),  # fewer strings than counted
        text("org") + varint(0) + varint(0) + varint(5) + varint(1) + varint(0) + numbers[2:],  # longs run out
        text("org") + varint(0) + varint(0) + varint(INT64_MIN) + numbers,  # a block of 2**63 longs
        text("org") + varint(0) + varint(0) + numbers[:-1] + varint(INT64_MAX),
    ]
    for data in cases:
        with pytest.raises(DecodeError):
            read_batch(data, 0, BATCH)


def test_huge_nested_counts_fail() -> None:
    head = text("org") + varint(0) + varint(0)
    for rows, items in ((INT64_MAX, 1), (1, INT64_MAX), (-(2**62), 1), (1, INT64_MIN), (3, 1)):
        body = bytearray()
        for name in list(kinds(BATCH))[3:]:
            body += varint(rows) + varint(items) + varint(5) if name == "tags" else varint(0)
        with pytest.raises(DecodeError):
            read_batch(head + bytes(body), 0, BATCH)


def test_mutated_messages_fail_cleanly_or_read_like_fastavro() -> None:
    """Random corruption: read_batch raises DecodeError or agrees with fastavro, nothing else."""
    rng = random.Random(5)
    originals = list(messages())
    outcomes = {"decode_error": 0, "agreed": 0}
    for _ in range(1500):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(data) + 1)
            action = rng.random()
            if action < 0.5 and where < len(data):
                data[where] = rng.randrange(256)
            elif action < 0.75:
                data[where:where] = bytes([rng.randrange(256)])
            elif where < len(data):
                del data[where]
        try:
            ours = read_batch(bytes(data), 0, BATCH)
        except DecodeError:
            outcomes["decode_error"] += 1
            continue
        except Exception as exc:  # the point of the test: anything but DecodeError is a bug
            pytest.fail(f"read_batch raised {exc!r} (not DecodeError) on {bytes(data).hex()}")
        theirs = fastavro_read(bytes(data))
        for name, kind in kinds(BATCH).items():
            assert as_lists(ours[name], kind) == theirs[name], f"{name} differs from fastavro on {bytes(data).hex()}"
        outcomes["agreed"] += 1
    assert outcomes["decode_error"] > 0 and outcomes["agreed"] > 0, outcomes


# ---------------------------------------------------------------------------------------------
# supports()


def test_supports_the_batch_schema() -> None:
    assert supports(BATCH)


def test_does_not_support_the_event_schema() -> None:
    # Unions, a nested record and a map.
    assert not supports(parsed_schema(schema_text("usage_event")))


@pytest.mark.parametrize(
    "fields",
    [
        [("n", "long"), ("s", "string")],
        [("xs", {"type": "array", "items": "long"}), ("s", {"type": "array", "items": "string"})],
        [("s", "string"), ("n", "int"), ("t", "string")],
        [("u", ["null", "string"])],
        [("u", ["null", "long"])],
        [("f", "double")],
        [("b", "boolean")],
        [("b", "bytes")],
        [("m", {"type": "map", "values": "long"})],
        [("e", {"type": "enum", "name": "E", "symbols": ["A"]})],
        [("x", {"type": "fixed", "name": "F", "size": 2})],
        [("r", {"type": "record", "name": "Inner", "fields": [("n", "long")]})],
        [("xs", {"type": "array", "items": {"type": "array", "items": "string"}})],
        [("xs", {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": "long"}}})],
        [("xs", {"type": "array", "items": ["null", "long"]})],
    ],
)
def test_does_not_support(fields: list[tuple[str, Any]]) -> None:
    def plain(node: Any) -> Any:
        if isinstance(node, dict) and node.get("type") == "record":
            return {**node, "fields": [{"name": n, "type": t} for n, t in node["fields"]]}
        return node

    schema = record_schema("Unsupported", [(name, plain(avro_type)) for name, avro_type in fields])
    assert not supports(schema)


def test_supports_only_records() -> None:
    assert not supports(fastavro.parse_schema({"type": "array", "items": "long"}))
    assert not supports("string")
    assert not supports(None)


def test_a_number_wider_than_64_bits_is_refused() -> None:
    """Ten bytes carry 70 bits; a 10th byte above 1 overflows a long (Java Avro refuses it)."""
    from schemas.batch_reader import decode_varints

    assert decode_varints(np.frombuffer(b"\xff" * 9 + b"\x01", dtype=np.uint8)).tolist() == [-(2**63)]
    with pytest.raises(DecodeError, match="wider than 64 bits"):
        decode_varints(np.frombuffer(b"\xff" * 9 + b"\x02", dtype=np.uint8))
