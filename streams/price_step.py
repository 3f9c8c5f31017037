"""One message through the pricing stage: bytes in, priced records and dead letters out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.codec import UsageCodec, usage_from_record
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.priced import PricedUsage
from streams.pricing import PriceCatalog, price_event


@dataclass
class MessageOutcome:
    """What one ``usage-events`` message (a single event or a batch) became.

    ``dead`` pairs each dead letter with the bytes to put on the DLQ: the message itself when
    it cannot be decoded, else the invalid record alone (re-encoded as a single event, which
    is lossless since it decoded), so one bad event never takes its batch down with it.
    """

    priced: list[PricedUsage] = field(default_factory=list)
    dead: list[tuple[DeadLetter, bytes | None]] = field(default_factory=list)


def price_message(
    value: bytes | None,
    codec: UsageCodec,
    catalog: PriceCatalog,
    providers: frozenset[str],
    now: datetime,
) -> MessageOutcome:
    """Decode, validate again and price every event of one message.

    Validation runs again here because producers other than our API publish to the topic:
    a record that decodes but breaks a rule is a dead letter, not a cost.
    """
    outcome = MessageOutcome()
    try:
        records = codec.decode_records(value)
    except DecodeError as exc:
        outcome.dead.append((DeadLetter.from_error(exc), value))
        return outcome
    batched = len(records) > 1
    for index, record in enumerate(records):
        try:
            event = usage_from_record(record, providers)
        except EventValidationError as exc:
            original = codec.encode_usage_record(record) if batched else value
            outcome.dead.append((DeadLetter.from_error(exc, index if batched else None), original))
            continue
        outcome.priced.append(price_event(event, catalog, now))
    return outcome
