"""One message through the pricing stage (streams/price_step.py) and dead-letter headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pyarrow as pa
import pytest

from schemas.codec import UsageCodec
from schemas.columns import batch_record, event_record, millis, row_record, table_from_events, validation_input
from schemas.dlq import BATCH_INDEX, DeadLetter
from schemas.errors import DecodeError, EventValidationError, SchemaRegistryUnavailableError
from schemas.priced import PRICED_SCHEMA, PricingStatus, decode_priced, encode_priced
from schemas.provider import allowed_providers
from schemas.registry import BuiltinSchemaTable, RegistrySchemaTable
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent
from streams.price_step import MessageOutcome, price_message, price_messages
from streams.pricing import PriceCatalog

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
NOW_MS = millis(NOW)
PROVIDERS = allowed_providers(())
SUBJECT = "usage-events-value"
EventFactory = Callable[..., UsageEvent]


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


@pytest.fixture
def codec() -> UsageCodec:
    return UsageCodec(AvroSerde(BuiltinSchemaTable()), SUBJECT)


def step(
    value: bytes | None, codec: UsageCodec, catalog: PriceCatalog, providers: frozenset[str] = PROVIDERS
) -> MessageOutcome:
    return price_message(value, codec, catalog, providers, NOW_MS)


def one(outcome: MessageOutcome, value: bytes | None) -> dict[str, Any] | DeadLetter:
    """The single result of a single-event message: its priced row, or its dead letter (which
    keeps the message's own bytes and no batch index)."""
    assert outcome.priced_count + len(outcome.dead) == 1, outcome
    if outcome.priced is not None:
        assert not outcome.dead
        assert outcome.priced.schema.equals(PRICED_SCHEMA)
        row: dict[str, Any] = outcome.priced.to_pylist()[0]
        return row
    ((letter, dead_value),) = outcome.dead
    assert letter.batch_index is None
    assert dead_value == value
    return letter


def raw_record(event: UsageEvent, **changes: Any) -> dict[str, Any]:
    """The event's Avro record with changes no validated event could have."""
    record = event_record(event)
    record.update(changes)
    return record


def test_valid_message_is_priced(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    event = usage_event()
    data = codec.encode_usage(event)
    outcome = step(data, codec, catalog)
    row = one(outcome, data)

    assert isinstance(row, dict)
    assert row["pricing_status"] == PricingStatus.PRICED
    assert row["event_id"] == event.id
    assert row["priced_at"] == NOW
    assert row["total_cost"] > 0
    assert outcome.priced is not None
    assert UsageEvent.parse(validation_input(row_record(outcome.priced, 0))) == event


def test_unknown_model_is_unpriced_not_dead(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    data = codec.encode_usage(usage_event(model="no-such-model"))
    row = one(step(data, codec, catalog), data)
    assert isinstance(row, dict)
    assert row["pricing_status"] == PricingStatus.UNPRICED
    assert row["total_cost"] is None
    assert row["unpriced_reason"] == "Pricing table not found for openai/no-such-model on 2025-01-15"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not avro at all", "magic byte is 110, expected 0 (not Confluent wire format)"),
        (b"", "empty message"),
        (None, "empty message"),
        (b"\x00\x00", "message of 2 bytes is shorter than the 5-byte header"),
        (b"\x00\x00\x00\x00\x09garbage", "unknown schema id 9"),
        (b"\x00\x00\x00\x00\x02garbage", "unknown schema id 2"),  # retired: priced records are Arrow now
    ],
)
def test_garbage_is_decode_error(codec: UsageCodec, catalog: PriceCatalog, value: bytes | None, reason: str) -> None:
    outcome = one(step(value, codec, catalog), value)
    assert outcome == DeadLetter(kind="DECODE_ERROR", reason=reason, field_errors={})


def test_truncated_avro_is_decode_error(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    data = codec.encode_usage(usage_event())[:-4]
    outcome = one(step(data, codec, catalog), data)
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "DECODE_ERROR"
    assert outcome.reason.startswith("Avro body does not match schema id 6")


def test_truncated_batch_is_one_decode_error(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    data = codec.encode_usage_batch([usage_event() for _ in range(3)])[:-2]
    outcome = one(step(data, codec, catalog), data)
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "DECODE_ERROR"
    assert outcome.reason.startswith("batch ")


def test_rule_violation_is_validation_error(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    event = usage_event(prompt_tokens=1000, completion_tokens=200)
    # Another producer skipped validation: the record is well-formed Avro but breaks a rule.
    data = codec.encode_usage_record(raw_record(event, total_tokens=999))
    assert codec.serde.decode(data)["total_tokens"] == 999

    outcome = one(step(data, codec, catalog), data)

    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "VALIDATION_ERROR"
    assert outcome.field_errors == {"total_tokens": "must equal prompt_tokens + completion_tokens (1200)"}
    assert outcome.reason == "invalid usage record: total_tokens"


def test_several_violations_in_one_dead_letter(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    data = codec.encode_usage_record(raw_record(usage_event(), provider="acme", organization_id="has space"))
    outcome = one(step(data, codec, catalog), data)
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "VALIDATION_ERROR"
    assert set(outcome.field_errors) == {"provider", "organization_id"}


def test_timestamp_too_far_from_now_is_validation_error(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    data = codec.encode_usage_record(raw_record(usage_event(), timestamp=millis(datetime(1999, 12, 31, tzinfo=UTC))))
    outcome = one(step(data, codec, catalog), data)
    assert isinstance(outcome, DeadLetter)
    assert outcome.field_errors == {"timestamp": "must not be before 2000-01-01"}


def test_custom_provider_accepted_by_worker(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    data = codec.encode_usage_record(raw_record(usage_event(), provider="acme"))
    rejected = one(step(data, codec, catalog), data)
    assert isinstance(rejected, DeadLetter)
    assert list(rejected.field_errors) == ["provider"]
    accepted = one(step(data, codec, catalog, allowed_providers(("acme",))), data)
    assert isinstance(accepted, dict)
    assert accepted["pricing_status"] == PricingStatus.UNPRICED


def test_values_the_model_normalizes_are_priced(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    """A row the column check flags but the model accepts is priced as the model normalized it."""
    data = codec.encode_usage_record(raw_record(usage_event(), provider="OpenAI", tags=[" padded "]))
    row = one(step(data, codec, catalog), data)
    assert isinstance(row, dict)
    assert (row["provider"], row["tags"]) == ("openai", ["padded"])
    assert row["pricing_status"] == PricingStatus.PRICED


def test_priced_message_on_usage_topic_is_dead(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    outcome = step(codec.encode_usage(usage_event()), codec, catalog)
    assert outcome.priced is not None
    data = encode_priced(outcome.priced)
    letter = one(step(data, codec, catalog), data)
    assert letter == DeadLetter(
        kind="DECODE_ERROR", reason="magic byte is -1, expected 0 (not Confluent wire format)", field_errors={}
    )


def test_dead_letter_from_error() -> None:
    letter = DeadLetter.from_error(EventValidationError("bad", {"a": "b"}))
    assert letter == DeadLetter(kind="VALIDATION_ERROR", reason="bad", field_errors={"a": "b"})
    assert DeadLetter.from_error(DecodeError("x")) == DeadLetter(kind="DECODE_ERROR", reason="x", field_errors={})
    assert DeadLetter.from_error(DecodeError("x"), batch_index=3).batch_index == 3


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
        ("x-dlq-batch-index", b"9"),
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


def test_dead_letter_headers_with_batch_index() -> None:
    letter = DeadLetter(kind="VALIDATION_ERROR", reason="r", field_errors={"a": "b"}, batch_index=0)
    assert letter.headers("t", 1, 2)[-2:] == [("x-dlq-field-errors", b"a: b"), (BATCH_INDEX, b"0")]


def test_schema_id_unknown_to_registry_is_dead_letter(catalog: PriceCatalog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error_code": 40403, "message": "Schema 9 not found"})

    data = b"\x00\x00\x00\x00\x09body"
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        codec = UsageCodec(AvroSerde(RegistrySchemaTable("http://registry.test", client)), SUBJECT)
        outcome = one(step(data, codec, catalog), data)
    assert isinstance(outcome, DeadLetter)
    assert outcome.kind == "DECODE_ERROR"
    assert outcome.reason.startswith("unknown schema id 9")


def test_registry_outage_is_not_a_dead_letter(catalog: PriceCatalog) -> None:
    """An outage says nothing about the message: the error reaches the agent, which retries."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "backend down"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        codec = UsageCodec(AvroSerde(RegistrySchemaTable("http://registry.test", client)), SUBJECT)
        with pytest.raises(SchemaRegistryUnavailableError, match="503 backend down"):
            step(b"\x00\x00\x00\x00\x09body", codec, catalog)


# --- batches --------------------------------------------------------------------------------


def encode_batch(codec: UsageCodec, events: list[UsageEvent], **changes: dict[int, Any]) -> bytes:
    """A batch message with per-row changes (``column={row: value}``) no validated event could have;
    a text value is added to the batch's strings."""
    record = batch_record(events)
    strings: list[str] = record["strings"]
    for column, rows in changes.items():
        for row, value in rows.items():
            if isinstance(value, str):
                strings.append(value)
                value = len(strings) - 1
            record[column][row] = value
    return codec.serde.encode("usage_batch", SUBJECT, record)


def test_batch_prices_every_event_and_dead_letters_only_the_bad_one(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    good = [usage_event(organization_id="org-b") for _ in range(3)]
    data = encode_batch(codec, good, prompt_tokens={1: -1})

    outcome = step(data, codec, catalog)

    assert outcome.priced is not None
    assert outcome.priced.column("event_id").to_pylist() == [good[0].id, good[2].id]
    assert outcome.priced.column("pricing_status").to_pylist() == ["priced", "priced"]
    ((letter, value),) = outcome.dead
    assert (letter.kind, letter.batch_index) == ("VALIDATION_ERROR", 1)
    assert (BATCH_INDEX, b"1") in letter.headers("t", 0, 7)
    assert letter.field_errors == {"prompt_tokens": "must be greater than or equal to 0"}
    # The dead letter is the bad event alone, as a single-event message, exactly as the batch held it.
    assert value is not None and value[:5] == b"\x00\x00\x00\x00\x06"
    assert codec.serde.decode(value) == raw_record(good[1], prompt_tokens=-1)
    assert codec.serde.decode(value) == row_record(codec.decode_usage(data), 1)


def test_batch_with_several_bad_events(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    events = [usage_event() for _ in range(6)]
    data = encode_batch(
        codec,
        events,
        cached_tokens={0: 10**9},
        provider={3: "acme"},
        total_tokens={5: 1},
    )

    outcome = step(data, codec, catalog)

    assert outcome.priced is not None
    assert outcome.priced.column("event_id").to_pylist() == [events[i].id for i in (1, 2, 4)]
    assert [(letter.batch_index, list(letter.field_errors)) for letter, _ in outcome.dead] == [
        (0, ["cached_tokens"]),
        (3, ["provider"]),
        (5, ["total_tokens"]),
    ]
    for (letter, value), index in zip(outcome.dead, (0, 3, 5), strict=True):
        assert value is not None
        assert codec.serde.decode(value)["id"] == events[index].id, letter


def test_batch_where_every_event_is_bad(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    events = [usage_event() for _ in range(2)]
    outcome = step(encode_batch(codec, events, reasoning_tokens={0: 10**6, 1: 10**6}), codec, catalog)
    assert outcome.priced is None
    assert outcome.priced_count == 0
    assert [letter.batch_index for letter, _ in outcome.dead] == [0, 1]


def test_batch_rows_the_model_normalizes_are_priced(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    events = [usage_event() for _ in range(3)]
    outcome = step(encode_batch(codec, events, provider={1: "OpenAI"}), codec, catalog)
    assert not outcome.dead
    assert outcome.priced is not None
    rows = {row["event_id"]: row for row in outcome.priced.to_pylist()}
    assert set(rows) == {e.id for e in events}
    assert rows[events[1].id]["provider"] == "openai"
    alone = catalog.price(table_from_events([events[1]]), NOW_MS).to_pylist()[0]
    assert alone["total_cost"] is not None
    assert rows[events[1].id]["total_cost"] == alone["total_cost"]


def test_batch_event_that_no_single_event_can_hold(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    """An endpoint without a source type: the dead letter keeps the whole batch (and the index)."""
    events = [usage_event(), usage_event()]
    data = encode_batch(codec, events, source_endpoint={0: "/v1/chat"})
    outcome = step(data, codec, catalog)
    ((letter, value),) = outcome.dead
    assert (letter.batch_index, letter.field_errors) == (0, {"source.type": "must be a string"})
    assert value == data
    assert outcome.priced is not None
    assert outcome.priced.column("event_id").to_pylist() == [events[1].id]


def test_batch_round_trip(codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory) -> None:
    events = [usage_event() for _ in range(5)] + [usage_event(model="no-such-model")]
    outcome = step(codec.encode_usage_batch(events), codec, catalog)

    assert outcome.priced_count == 6 and not outcome.dead
    assert outcome.priced is not None
    assert outcome.priced.select(list(table_from_events(events).column_names)).to_pylist() == (
        table_from_events(events).to_pylist()
    )
    decoded = decode_priced(encode_priced(outcome.priced))
    assert decoded.column("event_id").to_pylist() == [e.id for e in events]
    assert decoded.column("pricing_status").to_pylist() == ["priced"] * 5 + ["unpriced"]
    assert decoded.equals(outcome.priced)


# --- several messages at once ---------------------------------------------------------------


def costs(table: pa.Table) -> list[tuple[str, Any]]:
    return sorted(zip(table.column("event_id").to_pylist(), table.column("total_cost").to_pylist(), strict=True))


def test_several_messages_priced_together_come_back_one_outcome_each(
    codec: UsageCodec, catalog: PriceCatalog, usage_event: EventFactory
) -> None:
    """A take of messages is checked and priced as one table, then split back: each message
    gets exactly its own events (normalized ones included) and its own dead letters."""
    first = [usage_event(organization_id="org-a") for _ in range(4)]
    second = [usage_event(organization_id="org-b") for _ in range(3)]
    single = usage_event(organization_id="org-c")
    values: list[bytes | None] = [
        encode_batch(codec, first, prompt_tokens={1: -1}, provider={2: "OpenAI"}),
        b"garbage",
        codec.encode_usage(single),
        encode_batch(codec, second, reasoning_tokens={0: 10**9}),
    ]
    outcomes = price_messages(values, codec, catalog, PROVIDERS, millis(NOW))
    assert len(outcomes) == 4

    ids = [set(o.priced.column("event_id").to_pylist()) if o.priced is not None else set() for o in outcomes]
    assert ids[0] == {first[0].id, first[2].id, first[3].id}
    assert ids[1] == set()
    assert ids[2] == {single.id}
    assert ids[3] == {second[1].id, second[2].id}
    normalized = outcomes[0].priced
    assert normalized is not None and set(normalized.column("provider").to_pylist()) == {"openai"}

    assert [(letter.kind, letter.batch_index) for letter, _ in outcomes[0].dead] == [("VALIDATION_ERROR", 1)]
    assert [letter.kind for letter, _ in outcomes[1].dead] == ["DECODE_ERROR"]
    assert outcomes[1].dead[0][1] == b"garbage"
    assert outcomes[2].dead == []
    assert [(letter.kind, letter.batch_index) for letter, _ in outcomes[3].dead] == [("VALIDATION_ERROR", 0)]

    # The same prices as each message priced alone.
    for value, outcome in zip(values, outcomes, strict=True):
        alone = price_message(value, codec, catalog, PROVIDERS, millis(NOW))
        if outcome.priced is None:
            assert alone.priced is None
            continue
        assert alone.priced is not None
        assert costs(outcome.priced) == costs(alone.priced)
