"""One message through the pricing stage (streams/price_step.py) and dead-letter headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from schemas.codec import UsageCodec, usage_to_record
from schemas.dlq import BATCH_INDEX, DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.priced import PricedUsage, PricingStatus
from schemas.provider import allowed_providers
from schemas.registry import BuiltinSchemaTable, RegistrySchemaTable
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent
from streams.price_step import MessageOutcome, price_message
from streams.pricing import PriceCatalog

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
PROVIDERS = allowed_providers(())
EventFactory = Callable[..., UsageEvent]


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


@pytest.fixture
def codec() -> UsageCodec:
    return UsageCodec(AvroSerde(BuiltinSchemaTable()), "usage-events-value", "priced-usage-value")


def one(outcome: MessageOutcome) -> PricedUsage | DeadLetter:
    """The single result of a single-event message; its dead letter keeps the original bytes."""
    assert len(outcome.priced) + len(outcome.dead) == 1, outcome
    if outcome.priced:
        return outcome.priced[0]
    letter, _ = outcome.dead[0]
    assert letter.batch_index is None
    return letter


def raw_record(event: UsageEvent, **changes: Any) -> dict[str, Any]:
    record = usage_to_record(event)
    record.update(changes)
    return record


def test_valid_message_is_priced(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    event = usage_event()
    outcome = one(price_message(codec.encode_usage(event), codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, PricedUsage)
    assert outcome.pricing_status is PricingStatus.PRICED
    assert outcome.event == event
    assert outcome.priced_at == NOW
    assert outcome.cost is not None
    assert outcome.cost.total_cost > 0


def test_unknown_model_is_unpriced_not_dead(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    outcome = one(price_message(codec.encode_usage(usage_event(model="no-such-model")), codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, PricedUsage)
    assert outcome.pricing_status is PricingStatus.UNPRICED
    assert outcome.cost is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not avro at all", "magic byte is 110, expected 0 (not Confluent wire format)"),
        (b"", "empty message"),
        (None, "empty message"),
        (b"\x00\x00", "message of 2 bytes is shorter than the 5-byte header"),
        (b"\x00\x00\x00\x00\x09garbage", "unknown schema id 9"),
    ],
)
def test_garbage_is_decode_error(codec: UsageCodec, catalog: PriceCatalog, value: bytes | None, reason: str) -> None:
    outcome = one(price_message(value, codec, catalog, PROVIDERS, NOW))
    assert outcome == DeadLetter(kind="DECODE_ERROR", reason=reason, field_errors={})


def test_truncated_avro_is_decode_error(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    data = codec.encode_usage(usage_event())
    outcome = one(price_message(data[:-4], codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "DECODE_ERROR"
    assert outcome.reason.startswith("Avro body does not match schema id 1")


def test_rule_violation_is_validation_error(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    event = usage_event(prompt_tokens=1000, completion_tokens=200)
    # Another producer skipped validation: the record is well-formed Avro but breaks a rule.
    data = codec.serde.encode("usage_event", "usage-events-value", raw_record(event, total_tokens=999))
    assert codec.serde.decode(data)["total_tokens"] == 999

    outcome = one(price_message(data, codec, catalog, PROVIDERS, NOW))

    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "VALIDATION_ERROR"
    assert outcome.field_errors == {"total_tokens": "must equal prompt_tokens + completion_tokens (1200)"}
    assert outcome.reason == "invalid usage record: total_tokens"


def test_several_violations_in_one_dead_letter(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    record = raw_record(usage_event(), provider="acme", organization_id="has space")
    outcome = one(price_message(codec.serde.encode("usage_event", "s", record), codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "VALIDATION_ERROR"
    assert set(outcome.field_errors) == {"provider", "organization_id"}


def test_custom_provider_accepted_by_worker(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    record = raw_record(usage_event(), provider="acme")
    data = codec.serde.encode("usage_event", "s", record)
    rejected = one(price_message(data, codec, catalog, PROVIDERS, NOW))
    assert isinstance(rejected, DeadLetter)
    accepted = one(price_message(data, codec, catalog, allowed_providers(("acme",)), NOW))
    assert isinstance(accepted, PricedUsage)
    assert accepted.pricing_status is PricingStatus.UNPRICED


def test_priced_record_on_usage_topic_is_dead(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    priced = one(price_message(codec.encode_usage(usage_event()), codec, catalog, PROVIDERS, NOW))
    assert isinstance(priced, PricedUsage)
    outcome = one(price_message(codec.encode_priced(priced), codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "VALIDATION_ERROR"
    assert outcome.field_errors["pricing_status"] == "is not a known field"


def test_dead_letter_from_error() -> None:
    letter = DeadLetter.from_error(EventValidationError("bad", {"a": "b"}))
    assert letter == DeadLetter(kind="VALIDATION_ERROR", reason="bad", field_errors={"a": "b"})
    assert DeadLetter.from_error(DecodeError("x")) == DeadLetter(kind="DECODE_ERROR", reason="x", field_errors={})


def test_dead_letter_headers() -> None:
    letter = DeadLetter(
        kind="VALIDATION_ERROR",
        reason="invalid usage record: total_tokens, cached_tokens",
        field_errors={"total_tokens": "must equal 3", "cached_tokens": "must not exceed prompt_tokens"},
    )
    original = [
        ("traceparent", b"00-abc-def-01"),
        ("x-dlq-reason", b"an older failure"),
        ("x-dlq-kind", b"DECODE_ERROR"),
        ("x-dlq-source-offset", b"1"),
        ("content-type", b"avro"),
    ]

    headers = letter.headers("usage-events", 3, 12345, original)

    assert headers == [
        ("traceparent", b"00-abc-def-01"),
        ("content-type", b"avro"),
        ("x-dlq-reason", b"invalid usage record: total_tokens, cached_tokens"),
        ("x-dlq-kind", b"VALIDATION_ERROR"),
        ("x-dlq-source-topic", b"usage-events"),
        ("x-dlq-source-partition", b"3"),
        ("x-dlq-source-offset", b"12345"),
        ("x-dlq-field-errors", b"total_tokens: must equal 3; cached_tokens: must not exceed prompt_tokens"),
    ]


def test_dead_letter_headers_without_original_or_field_errors() -> None:
    letter = DeadLetter(kind="DECODE_ERROR", reason="empty message", field_errors={})
    assert letter.headers("usage-events", 0, 7) == [
        ("x-dlq-reason", b"empty message"),
        ("x-dlq-kind", b"DECODE_ERROR"),
        ("x-dlq-source-topic", b"usage-events"),
        ("x-dlq-source-partition", b"0"),
        ("x-dlq-source-offset", b"7"),
    ]
    assert letter.headers("usage-events", 0, 7, []) == letter.headers("usage-events", 0, 7)


def test_schema_id_unknown_to_registry_is_dead_letter(catalog: PriceCatalog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error_code": 40403, "message": "Schema 9 not found"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        codec = UsageCodec(AvroSerde(RegistrySchemaTable("http://registry.test", client)), "u", "p")
        outcome = one(price_message(b"\x00\x00\x00\x00\x09body", codec, catalog, PROVIDERS, NOW))
    assert isinstance(outcome, DeadLetter)


def test_batch_prices_every_event_and_dead_letters_only_the_bad_one(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    good = [usage_event(organization_id="org-b") for _ in range(3)]
    batch = {"events": [usage_to_record(good[0]), raw_record(good[1], prompt_tokens=-1), usage_to_record(good[2])]}
    data = codec.serde.encode("usage_batch", "s", batch)
    outcome = price_message(data, codec, catalog, PROVIDERS, NOW)
    assert [p.event for p in outcome.priced] == [good[0], good[2]]
    ((letter, value),) = outcome.dead
    assert (letter.kind, letter.batch_index) == ("VALIDATION_ERROR", 1)
    assert (BATCH_INDEX, b"1") in letter.headers("t", 0, 7)
    assert "prompt_tokens" in letter.field_errors
    # The dead letter is the bad event alone, as a single-event message.
    assert value is not None and codec.serde.decode(value) == batch["events"][1]


def test_batch_round_trip(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    events = [usage_event() for _ in range(5)]
    assert codec.decode_records(codec.encode_usage_batch(events)) == [usage_to_record(e) for e in events]
    outcome = price_message(codec.encode_usage_batch(events), codec, catalog, PROVIDERS, NOW)
    assert len(outcome.priced) == 5 and not outcome.dead
    decoded = codec.decode_records(codec.encode_priced_batch(outcome.priced))
    assert [r["id"] for r in decoded] == [e.id for e in events]
