"""One message through the pricing stage: bytes in, a priced table and dead letters out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from schemas.codec import UsageCodec
from schemas.columns import row_record, table_from_events, validation_input
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.usage import UsageEvent
from schemas.usage_check import rows_to_recheck
from streams.pricing import PriceCatalog


@dataclass
class MessageOutcome:
    """What one ``usage-events`` message (a single event or a batch) became.

    ``dead`` pairs each dead letter with the bytes to put on the DLQ: the message itself when
    it cannot be decoded (or is a single event), else the invalid event alone, re-encoded as a
    single-event message (lossless: it decoded), so one bad event never takes its batch down.
    """

    priced: pa.Table | None = None
    dead: list[tuple[DeadLetter, bytes | None]] = field(default_factory=list)

    @property
    def priced_count(self) -> int:
        return 0 if self.priced is None else self.priced.num_rows


def price_message(
    value: bytes | None,
    codec: UsageCodec,
    catalog: PriceCatalog,
    providers: frozenset[str],
    now_ms: int,
) -> MessageOutcome:
    """Decode, validate again and price every event of one message.

    Validation runs again here because producers other than our API publish to the topic:
    an event that decodes but breaks a rule is a dead letter, not a cost. The columns are
    checked at once; only the rows that check flags go through the full model one by one.
    """
    outcome = MessageOutcome()
    try:
        usage = codec.decode_usage(value)
    except DecodeError as exc:
        outcome.dead.append((DeadLetter.from_error(exc), value))
        return outcome
    flagged = rows_to_recheck(usage, providers, now_ms)
    if flagged.any():
        usage = _recheck(usage, flagged, codec, providers, value, outcome)
    if usage.num_rows:
        outcome.priced = catalog.price(usage, now_ms)
    return outcome


def _recheck(
    usage: pa.Table,
    flagged: np.ndarray,
    codec: UsageCodec,
    providers: frozenset[str],
    value: bytes | None,
    outcome: MessageOutcome,
) -> pa.Table:
    """The valid rows: the unflagged ones as they are, the flagged ones the model accepts as
    it normalized them; the others become dead letters with their field errors."""
    batched = usage.num_rows > 1
    accepted: list[UsageEvent] = []
    for index in np.flatnonzero(flagged).tolist():
        record = row_record(usage, index)
        try:
            accepted.append(UsageEvent.parse(validation_input(record), providers))
        except EventValidationError as exc:
            original = _alone(codec, record, value) if batched else value
            outcome.dead.append((DeadLetter.from_error(exc, index if batched else None), original))
    clean = usage.filter(pa.array(~flagged))
    if not accepted:
        return clean
    return pa.concat_tables([clean, table_from_events(accepted).cast(clean.schema)])


def _alone(codec: UsageCodec, record: dict[str, object], batch: bytes | None) -> bytes | None:
    """The event as a single-event message; the whole batch (its index in the headers) when
    the single-event schema cannot hold what the batch held, e.g. an endpoint without a source."""
    try:
        return codec.encode_usage_record(record)
    except (ValueError, TypeError):
        return batch
