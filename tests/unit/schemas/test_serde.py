"""Wire formats: Confluent Avro (schemas/serde.py), schema tables (schemas/registry.py), the usage
codec and its columns (schemas/codec.py, schemas/columns.py), and priced Arrow tables (schemas/priced.py)."""

from __future__ import annotations

import io
import itertools
import json
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import httpx
import numpy as np
import pyarrow as pa
import pytest

from schemas.codec import UsageCodec
from schemas.columns import (
    USAGE_SCHEMA,
    batch_record,
    event_record,
    from_millis,
    is_batch,
    millis,
    row_record,
    table_from_batch,
    table_from_events,
    validation_input,
)
from schemas.errors import DecodeError, EventValidationError, SchemaRegistryError, SchemaRegistryUnavailableError
from schemas.priced import CONTENT_TYPE, MONEY, PRICED_SCHEMA, decode_priced, encode_priced
from schemas.registry import (
    BUILTIN_IDS,
    DECODE_ONLY_IDS,
    BuiltinSchemaTable,
    RegistrySchemaTable,
    parsed_schema,
    schema_text,
)
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent
from streams.pricing import PriceCatalog

EventFactory = Callable[..., UsageEvent]
SUBJECT = "usage-events-value"
REGISTRY_URL = "http://registry.test:8081/"
PRICED_AT = datetime(2025, 1, 15, 10, 0, 5, 250000, tzinfo=UTC)
COSTS = ("input_cost", "cached_cost", "output_cost", "reasoning_cost", "total_cost")


@pytest.fixture
def codec() -> UsageCodec:
    return UsageCodec(AvroSerde(BuiltinSchemaTable()), SUBJECT)


@pytest.fixture
def full_event(usage_event: EventFactory) -> UsageEvent:
    return usage_event(
        model={"name": "gpt-4o", "version": "gpt-4o-2024-08-06", "context_window": 128000},
        reasoning_tokens=7,
        latency_ms=850,
        tags=["a", "b"],
        metadata={"request_id": "req-1", "n": 3},
        source={"type": "api", "endpoint": "/v1/chat"},
        timestamp="2025-01-15T10:00:00.123456Z",
    )


@pytest.fixture
def minimal_event() -> UsageEvent:
    return UsageEvent.parse(
        {
            "provider": "openai",
            "model": "gpt-4",
            "organization_id": "org-test",
            "prompt_tokens": 0,
            "completion_tokens": 0,
        }
    )


@pytest.fixture
def batch_events(usage_event: EventFactory, full_event: UsageEvent, minimal_event: UsageEvent) -> list[UsageEvent]:
    """Events of one organization, every optional field both set and unset."""
    return [
        full_event,
        minimal_event,
        usage_event(model="claude-3-5-sonnet", provider="anthropic", tags=[], metadata={}, project_id=None),
        usage_event(source={"type": "sdk"}, tags=["b", "test", "a"], metadata={"a": "b", "test": "x"}),
        usage_event(user_id=None, latency_ms=0, cached_tokens=0),
    ]


def header(data: bytes) -> tuple[int, int]:
    magic, schema_id = struct.unpack(">bI", data[:5])
    return magic, schema_id


def round_trip(table: pa.Table, index: int) -> UsageEvent:
    """Row ``index`` validated again, as the worker does with a row it must look at."""
    return UsageEvent.parse(validation_input(row_record(table, index)))


# --- built-in table -------------------------------------------------------------------------


def test_builtin_ids_are_fixed() -> None:
    assert BUILTIN_IDS == {"usage_event": 6, "usage_batch": 7}
    assert DECODE_ONLY_IDS == {1: "usage_event_v1", 5: "usage_batch_v1"}
    table = BuiltinSchemaTable()
    assert table.id_for("usage_event", "any-subject") == 6
    assert table.id_for("usage_batch", "any-subject") == 7


@pytest.mark.parametrize(("name", "schema_id"), [("usage_event_v1", 1), ("usage_batch_v1", 5)])
def test_messages_written_before_cache_writes_still_decode(
    codec: UsageCodec, full_event: UsageEvent, name: str, schema_id: int
) -> None:
    """Producers still on the first schemas: their events decode, with no cache writes."""
    record = event_record(full_event) if name == "usage_event_v1" else batch_record([full_event, full_event])
    old = parsed_schema(schema_text(name))
    record = {k: v for k, v in record.items() if k != "cache_write_tokens"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old, record)
    table = codec.decode_usage(b"\x00" + struct.pack(">I", schema_id) + body.getvalue())
    assert table.column("cache_write_tokens").to_pylist() == [0] * table.num_rows
    assert table.column("cached_tokens").to_pylist() == [full_event.cached_tokens] * table.num_rows


@pytest.mark.parametrize("retired", [2, 3, 4])
def test_retired_ids_are_unknown(codec: UsageCodec, full_event: UsageEvent, retired: int) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match=f"unknown schema id {retired}"):
        codec.serde.decode(b"\x00" + struct.pack(">I", retired) + data[5:])


def test_parsed_schema_drops_logical_types() -> None:
    for name in BUILTIN_IDS:
        text = schema_text(name)
        assert "timestamp-millis" in text  # the published schema keeps it
        assert "logicalType" not in json.dumps(parsed_schema(text))
    fields = {f["name"]: f["type"] for f in parsed_schema(schema_text("usage_event"))["fields"]}
    assert fields["timestamp"] == fields["ingested_at"] == {"type": "long"}


def test_millis() -> None:
    moment = datetime(2025, 1, 15, 10, 0, 0, 123999, tzinfo=UTC)
    assert millis(moment) == 1736935200123
    assert from_millis(1736935200123) == datetime(2025, 1, 15, 10, 0, 0, 123000, tzinfo=UTC)
    assert millis(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == -1
    assert from_millis(0) == datetime(1970, 1, 1, tzinfo=UTC)
    # No datetime holds it: the number itself, for validation to report.
    assert from_millis(2**62) == 2**62


# --- single events --------------------------------------------------------------------------


def test_usage_round_trip(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)

    assert data[0] == 0
    assert data[1:5] == b"\x00\x00\x00\x06"
    assert header(data) == (0, 6)
    record = codec.serde.decode(data)
    # Timestamps are epoch milliseconds on both sides of the wire (truncated to the millisecond).
    assert record["timestamp"] == 1736935200123
    assert record["ingested_at"] == millis(full_event.ingested_at)
    assert record["model"] == {"name": "gpt-4o", "version": "gpt-4o-2024-08-06", "context_window": 128000}
    assert record["metadata"] == {"request_id": "req-1", "n": "3"}
    assert record == event_record(full_event)
    assert UsageEvent.parse(validation_input(record)) == full_event


def test_decode_usage_of_one_event(codec: UsageCodec, full_event: UsageEvent) -> None:
    table = codec.decode_usage(codec.encode_usage(full_event))

    assert table.schema.equals(USAGE_SCHEMA)
    assert table.num_rows == 1
    (row,) = table.to_pylist()
    assert row == {
        "organization_id": "org-test",
        "event_id": full_event.id,
        "timestamp": datetime(2025, 1, 15, 10, 0, 0, 123000, tzinfo=UTC),
        "provider": "openai",
        "model": "gpt-4o",
        "model_version": "gpt-4o-2024-08-06",
        "context_window": 128000,
        "project_id": "proj-1",
        "user_id": "user-1",
        "prompt_tokens": full_event.prompt_tokens,
        "completion_tokens": full_event.completion_tokens,
        "total_tokens": full_event.prompt_tokens + full_event.completion_tokens,
        "cached_tokens": 100,
        "cache_write_tokens": 0,
        "reasoning_tokens": 7,
        "latency_ms": 850,
        "tags": ["a", "b"],
        "metadata": [("request_id", "req-1"), ("n", "3")],
        "source_type": "api",
        "source_endpoint": "/v1/chat",
        "ingested_at": full_event.ingested_at,
    }
    assert row_record(table, 0) == event_record(full_event)
    assert round_trip(table, 0) == full_event


def test_usage_round_trip_minimal(codec: UsageCodec, minimal_event: UsageEvent) -> None:
    table = codec.decode_usage(codec.encode_usage(minimal_event))
    (row,) = table.to_pylist()
    for name in ("model_version", "context_window", "project_id", "user_id", "latency_ms"):
        assert row[name] is None, name
    assert (row["source_type"], row["source_endpoint"]) == (None, None)
    assert (row["tags"], row["metadata"]) == ([], [])
    assert row_record(table, 0)["source"] is None
    assert round_trip(table, 0) == minimal_event


def test_event_record_is_plain_data(full_event: UsageEvent) -> None:
    record = event_record(full_event)
    assert record["source"] == {"type": "api", "endpoint": "/v1/chat"}
    assert record["total_tokens"] == full_event.prompt_tokens + full_event.completion_tokens
    assert record["timestamp"] == millis(full_event.timestamp)
    assert isinstance(record["ingested_at"], int)


def test_encode_usage_record(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    assert codec.encode_usage_record(codec.serde.decode(data)) == data


def test_usage_record_revalidated_on_decode(codec: UsageCodec, full_event: UsageEvent) -> None:
    record = codec.serde.decode(codec.encode_usage(full_event))
    record["cached_tokens"] = record["prompt_tokens"] + 1
    with pytest.raises(EventValidationError) as info:
        UsageEvent.parse(validation_input(record))
    assert list(info.value.field_errors) == ["cached_tokens"]


def test_timestamp_out_of_datetime_range_is_reported(codec: UsageCodec, full_event: UsageEvent) -> None:
    record = event_record(full_event)
    record["timestamp"] = 2**62
    decoded = codec.serde.decode(codec.encode_usage_record(record))
    with pytest.raises(EventValidationError) as info:
        UsageEvent.parse(validation_input(decoded))
    assert list(info.value.field_errors) == ["timestamp"]


# --- batches --------------------------------------------------------------------------------


def test_batch_round_trip(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = codec.encode_usage_batch(batch_events)

    assert header(data) == (0, 7)
    assert data[:5] == codec.batch_header()
    table = codec.decode_usage(data)
    assert table.schema.equals(USAGE_SCHEMA)
    assert table.to_pylist() == table_from_events(batch_events).to_pylist()
    for index, event in enumerate(batch_events):
        assert row_record(table, index) == event_record(event)
        assert round_trip(table, index) == event


def test_batch_record_stores_each_text_once(batch_events: list[UsageEvent]) -> None:
    record = batch_record(batch_events)
    strings = record["strings"]
    assert len(strings) == len(set(strings))
    assert strings.count("openai") == 1
    assert record["organization_id"] == "org-test"
    assert record["provider"][:3] == [strings.index("openai"), strings.index("openai"), strings.index("anthropic")]
    # Nulls: -1 in reference columns, 0 and -1 in the numeric ones that have none otherwise.
    assert record["model_version"][1] == -1
    assert record["context_window"][1] == 0
    assert record["latency_ms"][1] == -1
    assert record["source_endpoint"][3] == -1
    meta = record["metadata"][3]
    assert [strings[i] for i in meta] == ["a", "b", "test", "x"]


def test_batch_decoded_columns_hold_only_their_own_strings(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    """When a batch's strings outnumber its events, each text column's dictionary holds the
    values it uses, once: not the batch's whole ``strings`` (which would travel with every
    priced message downstream)."""
    assert len(batch_record(batch_events)["strings"]) > len(batch_events)
    table = codec.decode_usage(codec.encode_usage_batch(batch_events))
    for name in ("provider", "model", "project_id", "user_id", "source_type"):
        dictionary = table.column(name).chunk(0).dictionary.to_pylist()
        used = {v for v in table.column(name).to_pylist() if v is not None}
        assert sorted(dictionary) == sorted(used), name
    assert table.column("organization_id").chunk(0).dictionary.to_pylist() == ["org-test"]


def test_batch_with_repeated_strings_decodes_to_distinct_dictionaries(
    codec: UsageCodec, batch_events: list[UsageEvent]
) -> None:
    """A producer that does not intern its strings repeats them; ClickHouse refuses a
    dictionary with duplicates, so decoding folds them."""
    record = batch_record(batch_events)
    strings: list[str] = record["strings"]
    record["provider"] = [len(strings) + i for i in range(len(batch_events))]
    strings.extend("openai" for _ in batch_events)
    table = codec.decode_usage(codec.serde.encode("usage_batch", "usage-events-value", record))
    assert table.column("provider").chunk(0).dictionary.to_pylist() == ["openai"]
    assert table.column("provider").to_pylist() == ["openai"] * len(batch_events)


def test_batch_reader_agrees_with_fastavro(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = codec.encode_usage_batch(batch_events)
    ours = codec.serde.decode(data)
    buffer = io.BytesIO(data[5:])
    theirs = fastavro.schemaless_reader(buffer, parsed_schema(schema_text("usage_batch")), None)
    assert isinstance(theirs, dict)
    assert set(ours) == set(theirs)
    for name, value in ours.items():
        if isinstance(value, tuple):  # nested lists: (offsets, flat values)
            offsets, flat = value
            value = [flat[a:b].tolist() for a, b in itertools.pairwise(offsets)]
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        assert value == theirs[name], name


def test_batch_of_one_organization_only(usage_event: EventFactory) -> None:
    with pytest.raises(ValueError, match="one organization"):
        batch_record([usage_event(), usage_event(organization_id="org-other")])
    with pytest.raises(ValueError, match="at least one event"):
        batch_record([])


def test_is_batch(full_event: UsageEvent) -> None:
    assert is_batch(batch_record([full_event]))
    assert not is_batch(event_record(full_event))


# --- decode errors --------------------------------------------------------------------------


def test_decode_empty_bytes(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="empty message") as info:
        codec.serde.decode(b"")
    assert info.value.code == "DECODE_ERROR"


def test_decode_none(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="empty message"):
        codec.decode_usage(None)


def test_decode_short_header(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="message of 3 bytes is shorter than the 5-byte header"):
        codec.serde.decode(b"\x00\x00\x00")


def test_decode_wrong_magic_byte(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="magic byte is 1, expected 0"):
        codec.serde.decode(b"\x01" + data[1:])


def test_decode_json_is_not_wire_format(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match=r"magic byte is 123, expected 0 \(not Confluent wire format\)"):
        codec.decode_usage(b'{"id": "x"}')


def test_decode_unknown_schema_id(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="unknown schema id 8"):
        codec.serde.decode(b"\x00" + struct.pack(">I", 8) + data[5:])


def test_decode_truncated_body(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    for cut in (5, 6, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match="Avro body does not match schema id 6"):
            codec.decode_usage(data[:cut])


def test_decode_trailing_bytes(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="3 trailing bytes after the Avro record"):
        codec.serde.decode(data + b"\x00\x00\x00")


def test_decode_truncated_batch(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = codec.encode_usage_batch(batch_events)
    for cut in range(5, len(data)):
        with pytest.raises(DecodeError) as info:
            codec.decode_usage(data[:cut])
        assert info.value.message.startswith("batch "), (cut, info.value.message)


def test_decode_trailing_bytes_after_batch(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = codec.encode_usage_batch(batch_events)
    with pytest.raises(DecodeError, match="2 numbers left after the last field"):
        codec.decode_usage(data + b"\x00\x02")


def test_event_bytes_under_the_batch_id_fail(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError):
        codec.decode_usage(b"\x00\x00\x00\x00\x07" + data[5:])


def test_batch_bytes_under_the_event_id_fail(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage_batch([full_event])
    with pytest.raises(DecodeError):
        codec.decode_usage(b"\x00\x00\x00\x00\x06" + data[5:])


def broken_batch(codec: UsageCodec, events: list[UsageEvent], change: Callable[[dict[str, Any]], None]) -> bytes:
    """A batch message another producer wrote: valid Avro, inconsistent columns."""
    record = batch_record(events)
    change(record)
    return codec.serde.encode("usage_batch", SUBJECT, record)


def test_batch_columns_of_different_lengths(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = broken_batch(codec, batch_events, lambda r: r["prompt_tokens"].pop())
    with pytest.raises(DecodeError, match="batch column prompt_tokens has 4 items, event_id has 5"):
        codec.decode_usage(data)


@pytest.mark.parametrize(
    ("column", "value"),
    [("model", 99), ("provider", -2), ("project_id", 10**6), ("tags", [0, 99]), ("metadata", [0, 99])],
)
def test_batch_reference_to_no_string(
    codec: UsageCodec, batch_events: list[UsageEvent], column: str, value: Any
) -> None:
    def change(record: dict[str, Any]) -> None:
        record[column][0] = value

    with pytest.raises(DecodeError, match=f"batch column {column} refers to a string the batch does not hold"):
        codec.decode_usage(broken_batch(codec, batch_events, change))


def test_batch_metadata_key_without_value(codec: UsageCodec, batch_events: list[UsageEvent]) -> None:
    data = broken_batch(codec, batch_events, lambda r: r["metadata"][0].pop())
    with pytest.raises(DecodeError, match="batch column metadata holds a key without a value"):
        codec.decode_usage(data)


def test_batch_string_not_utf8(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage_batch([full_event])
    position = data.index(b"org-test")
    with pytest.raises(DecodeError, match="not UTF-8"):
        codec.decode_usage(data[:position] + b"\xff" + data[position + 1 :])


def test_table_from_batch_checks_lengths(batch_events: list[UsageEvent]) -> None:
    record = batch_record(batch_events)
    record["tags"] = record["tags"][:2]
    with pytest.raises(DecodeError, match="batch column tags has 2 items, event_id has 5"):
        table_from_batch(record)


# --- Schema Registry ------------------------------------------------------------------------


class FakeRegistry:
    """Emulates the Confluent Schema Registry REST API in memory: one id per distinct schema."""

    def __init__(self, first_id: int = 42) -> None:
        self.next_id = first_id
        self.schemas: dict[int, str] = {}
        self.requests: list[httpx.Request] = []
        self.refuse: tuple[int, dict[str, Any]] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse is not None:
            status, body = self.refuse
            return httpx.Response(status, json=body)
        path = request.url.path
        if request.method == "POST" and path.startswith("/subjects/") and path.endswith("/versions"):
            text = json.loads(request.content)["schema"]
            sid = next((i for i, known in self.schemas.items() if known == text), None)
            if sid is None:
                sid, self.next_id = self.next_id, self.next_id + 1
                self.schemas[sid] = text
            return httpx.Response(200, json={"id": sid})
        if request.method == "GET" and path.startswith("/schemas/ids/"):
            sid = int(path.rsplit("/", 1)[1])
            if sid not in self.schemas:
                return httpx.Response(404, json={"error_code": 40403, "message": "Schema not found"})
            return httpx.Response(200, json={"schema": self.schemas[sid]})
        return httpx.Response(404, json={"error_code": 404, "message": "HTTP 404 Not Found"})


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def http(registry: FakeRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(registry)) as client:
        yield client


def registry_codec(http: httpx.Client) -> UsageCodec:
    return UsageCodec(AvroSerde(RegistrySchemaTable(REGISTRY_URL, http)), SUBJECT)


def test_registry_encode_uses_registered_id(registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent) -> None:
    codec = registry_codec(http)
    data = codec.encode_usage(full_event)

    assert header(data) == (0, 42)
    assert data[1:5] == b"\x00\x00\x00\x2a"
    assert len(registry.requests) == 1
    request = registry.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://registry.test:8081/subjects/usage-events-value/versions"
    assert request.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    assert json.loads(request.content) == {"schema": schema_text("usage_event")}
    assert round_trip(codec.decode_usage(data), 0) == full_event
    # Registration cached the parsed schema: decoding made no request either.
    assert len(registry.requests) == 1


def test_registry_encode_is_cached(registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent) -> None:
    codec = registry_codec(http)
    first = codec.encode_usage(full_event)
    second = codec.encode_usage(full_event)
    assert first == second
    assert len(registry.requests) == 1


def test_registry_batch_under_the_usage_subject(
    registry: FakeRegistry, http: httpx.Client, batch_events: list[UsageEvent]
) -> None:
    codec = registry_codec(http)
    data = codec.encode_usage_batch(batch_events)

    assert header(data) == (0, 42)
    assert codec.batch_header() == data[:5]
    ((method, path, body),) = [(r.method, r.url.path, json.loads(r.content)) for r in registry.requests]
    assert (method, path) == ("POST", "/subjects/usage-events-value/versions")
    assert body == {"schema": schema_text("usage_batch")}
    assert codec.decode_usage(data).to_pylist() == table_from_events(batch_events).to_pylist()


def test_registry_decode_fetches_unknown_id(
    registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent, batch_events: list[UsageEvent]
) -> None:
    writer = registry_codec(http)
    single = writer.encode_usage(full_event)
    batch = writer.encode_usage_batch(batch_events)
    assert (header(single), header(batch)) == ((0, 42), (0, 43))
    registry.requests.clear()

    fresh = registry_codec(http)  # a different process: knows no id yet
    assert round_trip(fresh.decode_usage(single), 0) == full_event
    # The fetched batch schema is read by the vectorized reader too.
    assert fresh.decode_usage(batch).to_pylist() == table_from_events(batch_events).to_pylist()

    assert [(r.method, r.url.path) for r in registry.requests] == [
        ("GET", "/schemas/ids/42"),
        ("GET", "/schemas/ids/43"),
    ]
    fresh.decode_usage(single)
    fresh.decode_usage(batch)
    assert len(registry.requests) == 2


def test_registry_refusal_raises_with_message(
    registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent
) -> None:
    registry.refuse = (422, {"error_code": 42201, "message": "Invalid schema"})
    with pytest.raises(SchemaRegistryError, match="422 Invalid schema") as info:
        registry_codec(http).encode_usage(full_event)
    assert "POST /subjects/usage-events-value/versions" in info.value.message
    assert info.value.code == "SCHEMA_ERROR"


def test_registry_unknown_id_raises(http: httpx.Client, full_event: UsageEvent, codec: UsageCodec) -> None:
    data = b"\x00" + struct.pack(">I", 99) + codec.encode_usage(full_event)[5:]
    # The message names a schema that does not exist: a property of the data (dead letter).
    with pytest.raises(DecodeError, match=r"unknown schema id 99 .*GET /schemas/ids/99: 404 Schema not found"):
        registry_codec(http).decode_usage(data)


def test_registry_schema_that_is_not_avro(registry: FakeRegistry, http: httpx.Client) -> None:
    registry.schemas[77] = '{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}'
    with pytest.raises(DecodeError, match="schema id 77 is not an Avro schema this pipeline can read"):
        registry_codec(http).decode_usage(b"\x00\x00\x00\x00\x4d\x02")


@pytest.mark.parametrize(
    ("schema", "record"),
    [
        # Columnar in shape (the vectorized reader takes it), but not ours.
        ({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "long"}]}, {"x": 5}),
        # Read by fastavro, not ours either.
        (
            {"type": "record", "name": "Other", "fields": [{"name": "x", "type": ["null", "string"]}]},
            {"x": "y"},
        ),
    ],
)
def test_registry_schema_of_another_record(
    registry: FakeRegistry, http: httpx.Client, schema: dict[str, Any], record: dict[str, Any]
) -> None:
    registry.schemas[78] = json.dumps(schema)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    with pytest.raises(DecodeError, match="the record is not a usage event or batch"):
        registry_codec(http).decode_usage(b"\x00\x00\x00\x00\x4e" + buffer.getvalue())


def test_registry_schema_that_is_not_a_record(registry: FakeRegistry, http: httpx.Client) -> None:
    registry.schemas[79] = '"string"'
    with pytest.raises(DecodeError, match="schema id 79 does not describe a record"):
        registry_codec(http).decode_usage(b"\x00\x00\x00\x00\x4f\x02a")


def test_registry_non_json_error_body(full_event: UsageEvent) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, text="conflict!")

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(SchemaRegistryError, match="409 conflict!"),
    ):
        registry_codec(client).encode_usage(full_event)


def test_registry_unreachable(full_event: UsageEvent) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(SchemaRegistryUnavailableError, match="unreachable"),
    ):
        registry_codec(client).encode_usage(full_event)


def test_registry_server_error_is_retryable(full_event: UsageEvent) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "backend down"})

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(SchemaRegistryUnavailableError, match="503 backend down"),
    ):
        registry_codec(client).encode_usage(full_event)


# --- priced-usage: Arrow IPC ----------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def priced_table(catalog: PriceCatalog, events: list[UsageEvent]) -> pa.Table:
    return catalog.price(table_from_events(events), millis(PRICED_AT))


def test_priced_round_trip(catalog: PriceCatalog, full_event: UsageEvent) -> None:
    table = priced_table(catalog, [full_event])
    data = encode_priced(table)

    assert data[:4] == b"\xff\xff\xff\xff"  # an Arrow IPC stream, not Confluent wire format
    back = decode_priced(data)
    assert back.to_pylist() == table.to_pylist()  # same rows; dictionaries compacted on the way
    assert back.schema.equals(PRICED_SCHEMA)
    (row,) = back.to_pylist()
    assert row["pricing_status"] == "priced"
    # gpt-4o: 1000+n prompt (100 cached), 200+n completion (7 reasoning) at $2.5 / $1.25 / $10.
    prompt, completion = full_event.prompt_tokens, full_event.completion_tokens
    assert row["input_cost"] == Decimal(prompt - 100) * Decimal("0.0000025")
    assert row["cached_cost"] == Decimal("0.0001250000")
    assert row["output_cost"] == Decimal(completion - 7) * Decimal("0.00001")
    assert row["reasoning_cost"] == Decimal("0.0000700000")
    assert row["total_cost"] == sum((row[name] for name in COSTS[:4]), Decimal(0))
    assert row["price_source"] == "genai-prices==0.2.3 openai/gpt-4o"
    assert row["priced_at"] == PRICED_AT
    for name in COSTS:
        assert row[name].as_tuple().exponent == -10
        assert back.schema.field(name).type == MONEY


def test_unpriced_round_trip_keeps_null_costs(
    catalog: PriceCatalog, usage_event: EventFactory, full_event: UsageEvent
) -> None:
    table = priced_table(catalog, [usage_event(model="gpt-99"), full_event])
    unpriced, priced = decode_priced(encode_priced(table)).to_pylist()
    for key in (*COSTS, "price_source"):
        assert unpriced[key] is None, key
        assert priced[key] is not None, key
    assert unpriced["pricing_status"] == "unpriced"
    assert unpriced["currency"] == "USD"
    assert unpriced["unpriced_reason"] == "Pricing table not found for openai/gpt-99 on 2025-01-15"


def test_priced_table_of_custom_provider(catalog: PriceCatalog) -> None:
    event = UsageEvent.parse(
        {"provider": "acme", "model": "m", "organization_id": "o", "prompt_tokens": 1, "completion_tokens": 1},
        providers=frozenset({"acme"}),
    )
    table = priced_table(catalog, [event])
    assert decode_priced(encode_priced(table)).to_pylist() == table.to_pylist()


def test_encode_priced_casts_to_the_schema(catalog: PriceCatalog, full_event: UsageEvent) -> None:
    table = priced_table(catalog, [full_event])
    plain = table.cast(
        pa.schema([f.with_type(pa.string()) if pa.types.is_dictionary(f.type) else f for f in PRICED_SCHEMA])
    )
    back = decode_priced(encode_priced(plain))
    assert back.schema.equals(PRICED_SCHEMA)
    assert back.to_pylist() == table.to_pylist()


def test_priced_content_type() -> None:
    assert CONTENT_TYPE == b"application/vnd.apache.arrow.stream"


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


@pytest.mark.parametrize(("data", "reason"), [(b"", "empty message"), (None, "empty message")])
def test_decode_priced_empty(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        decode_priced(data)
    assert info.value.code == "DECODE_ERROR"


def test_decode_priced_not_arrow(codec: UsageCodec, full_event: UsageEvent) -> None:
    for data in (b"garbage", codec.encode_usage(full_event)):
        with pytest.raises(DecodeError, match="not an Arrow IPC stream"):
            decode_priced(data)


def test_decode_priced_other_table() -> None:
    with pytest.raises(
        DecodeError,
        match=r"not a priced-usage table \(missing or mistyped columns: cache_write_cost, cached_cost, currency, "
        r"input_cost, output_cost, price_rates, price_source, priced_at, pricing_status, reasoning_cost, request_cost, "
        r"tier_volume, total_cost, unpriced_reason\)",
    ):
        decode_priced(arrow_stream(USAGE_SCHEMA.empty_table()))


def test_decode_priced_mistyped_column() -> None:
    schema = pa.schema([f.with_type(pa.float64()) if f.name == "total_cost" else f for f in PRICED_SCHEMA])
    with pytest.raises(DecodeError, match=r"missing or mistyped columns: types\)"):
        decode_priced(arrow_stream(schema.empty_table()))


def test_priced_message_of_a_slice_carries_only_its_own_text(catalog: PriceCatalog) -> None:
    """A message's table is a slice of its take's table, whose dictionaries hold the text of
    every message of the take; what is written holds only the slice's own."""
    events = [
        UsageEvent.parse({"provider": "openai", "model": "gpt-4o", "organization_id": "o", "user_id": f"user-{i}",
                          "prompt_tokens": 1, "completion_tokens": 1})
        for i in range(2000)
    ]  # fmt: skip
    table = priced_table(catalog, events)
    alone = encode_priced(table.slice(0, 1))
    back = decode_priced(alone)
    assert back.column("user_id").chunk(0).dictionary.to_pylist() == ["user-0"]
    assert len(alone) < 10_000


# --- writer schemas other than ours (a Schema Registry may hold any) --------------------------


class OneSchemaTable:
    """A schema table holding one writer schema under id 9, as a registry would serve it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = parsed_schema(json.dumps(schema))

    def id_for(self, name: str, subject: str) -> int:
        return 9

    def schema_for(self, schema_id: int) -> Any:
        return self._schema


def writer_variant(change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> dict[str, Any]:
    schema = json.loads(schema_text("usage_event"))
    schema["fields"] = change(schema["fields"])
    return dict(schema)


def test_older_writer_without_defaulted_fields_still_decodes(full_event: UsageEvent) -> None:
    dropped = {"cached_tokens", "reasoning_tokens", "tags", "metadata", "latency_ms"}
    schema = writer_variant(lambda fields: [f for f in fields if f["name"] not in dropped])
    codec = UsageCodec(AvroSerde(OneSchemaTable(schema)), "s")
    record = {k: v for k, v in event_record(full_event).items() if k not in dropped}
    row = codec.decode_usage(codec.serde.encode("usage_event", "s", record)).to_pylist()[0]
    assert (row["cached_tokens"], row["reasoning_tokens"], row["tags"], row["latency_ms"]) == (0, 0, [], None)


def test_timestamp_micros_writer_is_read_as_the_same_instant(full_event: UsageEvent) -> None:
    def micros(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for field in fields:
            if field["name"] in ("timestamp", "ingested_at"):
                field["type"] = {"type": "long", "logicalType": "timestamp-micros"}
        return fields

    codec = UsageCodec(AvroSerde(OneSchemaTable(writer_variant(micros))), "s")
    record = {**event_record(full_event), "timestamp": full_event.timestamp, "ingested_at": full_event.ingested_at}
    row = codec.decode_usage(codec.serde.encode("usage_event", "s", record)).to_pylist()[0]
    assert row["timestamp"] == full_event.timestamp


def test_writer_of_another_shape_is_a_decode_error_not_a_crash(full_event: UsageEvent) -> None:
    def plain_source(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for field in fields:
            if field["name"] == "source":
                field["type"] = ["null", "string"]
        return fields

    codec = UsageCodec(AvroSerde(OneSchemaTable(writer_variant(plain_source))), "s")
    data = codec.serde.encode("usage_event", "s", {**event_record(full_event), "source": "sdk"})
    with pytest.raises(DecodeError, match="not a usage event or batch"):
        codec.decode_usage(data)
