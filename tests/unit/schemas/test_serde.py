"""Confluent wire format (schemas/serde.py), schema tables (schemas/registry.py) and the codec."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from schemas.codec import (
    UsageCodec,
    priced_from_record,
    priced_to_record,
    usage_from_record,
    usage_to_record,
)
from schemas.errors import DecodeError, EventValidationError, SchemaRegistryError, SchemaRegistryUnavailableError
from schemas.priced import CostBreakdown, PricedUsage, PricingStatus
from schemas.registry import BUILTIN_IDS, BuiltinSchemaTable, RegistrySchemaTable, schema_text
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent

EventFactory = Callable[..., UsageEvent]
PRICED_AT = datetime(2025, 1, 15, 10, 0, 5, 250000, tzinfo=UTC)
REGISTRY_URL = "http://registry.test:8081/"


@pytest.fixture
def codec() -> UsageCodec:
    return UsageCodec(AvroSerde(BuiltinSchemaTable()), "usage-events-value", "priced-usage-value")


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


def priced(event: UsageEvent) -> PricedUsage:
    return PricedUsage(
        event=event,
        pricing_status=PricingStatus.PRICED,
        cost=CostBreakdown(
            input_cost=Decimal("0.0022500000"),
            cached_cost=Decimal("0.0001250000"),
            output_cost=Decimal("0.0019300000"),
            reasoning_cost=Decimal("0.0000700000"),
            price_source="genai-prices==0.2.3 openai/gpt-4o",
        ),
        priced_at=PRICED_AT,
    )


def unpriced(event: UsageEvent) -> PricedUsage:
    return PricedUsage(
        event=event,
        pricing_status=PricingStatus.UNPRICED,
        cost=None,
        unpriced_reason="no list price for openai/gpt-99",
        priced_at=PRICED_AT,
    )


def header(data: bytes) -> tuple[int, int]:
    magic, schema_id = struct.unpack(">bI", data[:5])
    return magic, schema_id


# --- built-in table -------------------------------------------------------------------------


def test_builtin_ids_are_fixed() -> None:
    assert BUILTIN_IDS == {"usage_event": 1, "priced_usage": 2, "usage_batch": 3, "priced_batch": 4}
    table = BuiltinSchemaTable()
    assert table.id_for("usage_event", "any-subject") == 1
    assert table.id_for("priced_usage", "any-subject") == 2


def test_usage_round_trip(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)

    assert data[0] == 0
    assert data[1:5] == b"\x00\x00\x00\x01"
    assert header(data) == (0, 1)
    record = codec.serde.decode(data)
    assert record["timestamp"] == datetime(2025, 1, 15, 10, 0, 0, 123000, tzinfo=UTC)
    assert record["model"] == {"name": "gpt-4o", "version": "gpt-4o-2024-08-06", "context_window": 128000}
    assert record["metadata"] == {"request_id": "req-1", "n": "3"}
    assert usage_from_record(record) == full_event


def test_usage_round_trip_minimal(codec: UsageCodec) -> None:
    event = UsageEvent.parse(
        {"provider": "openai", "model": "gpt-4", "organization_id": "o", "prompt_tokens": 0, "completion_tokens": 0}
    )
    assert usage_from_record(codec.serde.decode(codec.encode_usage(event))) == event


def test_usage_to_record_is_plain_data(full_event: UsageEvent) -> None:
    record = usage_to_record(full_event)
    assert record["source"] == {"type": "api", "endpoint": "/v1/chat"}
    assert record["total_tokens"] == full_event.prompt_tokens + full_event.completion_tokens


def test_priced_round_trip(codec: UsageCodec, full_event: UsageEvent) -> None:
    original = priced(full_event)
    data = codec.encode_priced(original)

    assert data[0] == 0
    assert data[1:5] == b"\x00\x00\x00\x02"
    record = codec.serde.decode(data)
    assert record["pricing_status"] == "priced"
    assert record["total_cost"] == Decimal("0.0043750000")
    assert record["input_cost"] == Decimal("0.0022500000")
    assert record["priced_at"] == PRICED_AT
    back = priced_from_record(record)
    assert back == original
    assert back.cost is not None
    assert back.cost.total_cost == Decimal("0.0043750000")


def test_unpriced_round_trip_keeps_null_costs(codec: UsageCodec, full_event: UsageEvent) -> None:
    original = unpriced(full_event)
    record = codec.serde.decode(codec.encode_priced(original))
    for key in ("input_cost", "cached_cost", "output_cost", "reasoning_cost", "total_cost", "price_source"):
        assert record[key] is None, key
    assert record["pricing_status"] == "unpriced"
    assert record["currency"] == "USD"
    assert record["unpriced_reason"] == "no list price for openai/gpt-99"
    assert priced_from_record(record) == original


def test_priced_record_of_custom_provider(codec: UsageCodec) -> None:
    event = UsageEvent.parse(
        {"provider": "acme", "model": "m", "organization_id": "o", "prompt_tokens": 1, "completion_tokens": 1},
        providers=frozenset({"acme"}),
    )
    original = unpriced(event)
    assert priced_from_record(codec.serde.decode(codec.encode_priced(original))) == original


def test_priced_to_record_total_has_ten_places(full_event: UsageEvent) -> None:
    record = priced_to_record(priced(full_event))
    assert record["total_cost"].as_tuple().exponent == -10


def test_usage_record_revalidated_on_decode(codec: UsageCodec, full_event: UsageEvent) -> None:
    record = codec.serde.decode(codec.encode_usage(full_event))
    record["cached_tokens"] = record["prompt_tokens"] + 1
    with pytest.raises(EventValidationError) as info:
        usage_from_record(record)
    assert list(info.value.field_errors) == ["cached_tokens"]


# --- decode errors --------------------------------------------------------------------------


def test_decode_empty_bytes(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="empty message") as info:
        codec.serde.decode(b"")
    assert info.value.code == "DECODE_ERROR"


def test_decode_none(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="empty message"):
        codec.serde.decode(None)


def test_decode_short_header(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match="message of 3 bytes is shorter than the 5-byte header"):
        codec.serde.decode(b"\x00\x00\x00")


def test_decode_wrong_magic_byte(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="magic byte is 1, expected 0"):
        codec.serde.decode(b"\x01" + data[1:])


def test_decode_json_is_not_wire_format(codec: UsageCodec) -> None:
    with pytest.raises(DecodeError, match=r"magic byte is 123, expected 0 \(not Confluent wire format\)"):
        codec.serde.decode(b'{"id": "x"}')


def test_decode_unknown_schema_id(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="unknown schema id 7"):
        codec.serde.decode(b"\x00" + struct.pack(">I", 7) + data[5:])


def test_decode_truncated_body(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    for cut in (5, 6, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match="Avro body does not match schema id 1"):
            codec.serde.decode(data[:cut])


def test_decode_trailing_bytes(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError, match="3 trailing bytes after the Avro record"):
        codec.serde.decode(data + b"\x00\x00\x00")


def test_usage_bytes_under_priced_id_fail(codec: UsageCodec, full_event: UsageEvent) -> None:
    data = codec.encode_usage(full_event)
    with pytest.raises(DecodeError):
        codec.serde.decode(b"\x00\x00\x00\x00\x02" + data[5:])


# --- Schema Registry ------------------------------------------------------------------------


class FakeRegistry:
    """Emulates the Confluent Schema Registry REST API in memory."""

    def __init__(self, schema_id: int = 42) -> None:
        self.schema_id = schema_id
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
            self.schemas[self.schema_id] = text
            return httpx.Response(200, json={"id": self.schema_id})
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
    return UsageCodec(AvroSerde(RegistrySchemaTable(REGISTRY_URL, http)), "usage-events-value", "priced-usage-value")


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
    assert usage_from_record(codec.serde.decode(data)) == full_event
    # Registration cached the parsed schema: decoding made no request either.
    assert len(registry.requests) == 1


def test_registry_encode_is_cached(registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent) -> None:
    codec = registry_codec(http)
    first = codec.encode_usage(full_event)
    second = codec.encode_usage(full_event)
    assert first == second
    assert len(registry.requests) == 1


def test_registry_priced_subject(registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent) -> None:
    codec = registry_codec(http)
    data = codec.encode_priced(priced(full_event))
    assert header(data) == (0, 42)
    assert registry.requests[0].url.path == "/subjects/priced-usage-value/versions"
    assert priced_from_record(codec.serde.decode(data)) == priced(full_event)


def test_registry_decode_fetches_unknown_id(registry: FakeRegistry, http: httpx.Client, full_event: UsageEvent) -> None:
    data = registry_codec(http).encode_usage(full_event)
    registry.requests.clear()

    fresh = registry_codec(http)  # a different process: knows no id yet
    record = fresh.serde.decode(data)

    assert usage_from_record(record) == full_event
    assert [(r.method, r.url.path) for r in registry.requests] == [("GET", "/schemas/ids/42")]
    fresh.serde.decode(data)
    assert len(registry.requests) == 1


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
        registry_codec(http).serde.decode(data)


def test_registry_non_json_error_body(registry: FakeRegistry, full_event: UsageEvent) -> None:
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
