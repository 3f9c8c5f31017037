"""One message through the pricing stage: bytes in, a priced table and dead letters out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from schemas.codec import UsageCodec
from schemas.columns import row_record, table_from_events, validation_input
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.usage import UsageEvent
from schemas.usage_check import rows_to_recheck
from streams.pricing import PriceCatalog, Pricer
from streams.volume import DictVolumes, VolumeStore, count_volumes


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
    pricer: Pricer | PriceCatalog,
    providers: frozenset[str],
    now_ms: int,
    volumes: VolumeStore | None = None,
) -> MessageOutcome:
    """Decode, validate again and price every event of one message."""
    return price_messages([value], codec, pricer, providers, now_ms, volumes)[0]


def price_messages(
    values: Sequence[bytes | None],
    codec: UsageCodec,
    pricer: Pricer | PriceCatalog,
    providers: frozenset[str],
    now_ms: int,
    volumes: VolumeStore | None = None,
) -> list[MessageOutcome]:
    """Decode, validate again and price every event of several messages: one outcome each.

    Validation runs again here because producers other than our API publish to the topic:
    an event that decodes but breaks a rule is a dead letter, not a cost. The messages are
    decoded one by one, then checked and priced as one table, so the per-call costs of the
    column kernels are paid once per take of messages, not once per message. Only the rows
    the column check flags go through the full model one by one.

    ``volumes`` holds the monthly volumes tiered rules price against: read, then each touched
    key set to its new total (:func:`streams.volume.count_volumes`).
    """
    outcomes = [MessageOutcome() for _ in values]
    tables: list[pa.Table] = []
    owners: list[int] = []
    for number, value in enumerate(values):
        try:
            table = codec.decode_usage(value)
        except DecodeError as exc:
            outcomes[number].dead.append((DeadLetter.from_error(exc), value))
            continue
        tables.append(table)
        owners.append(number)
    if not tables:
        return outcomes
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    usage = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
    message = np.repeat(np.array(owners, dtype=np.int64), sizes)
    position = np.arange(len(message)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    flagged = rows_to_recheck(usage, providers, now_ms)
    if flagged.any():
        batched = {number for number, size in zip(owners, sizes.tolist(), strict=True) if size > 1}
        rows = _Rows(usage, message, position)
        usage, message = _recheck(rows, flagged, batched, values, codec, providers, outcomes)
    if usage.num_rows:
        if isinstance(pricer, PriceCatalog):
            pricer = Pricer(pricer)
        # Without a store, volumes start at 0 and count within the take only.
        before = count_volumes(usage, message, volumes if volumes is not None else DictVolumes())
        _split(pricer.price(usage, now_ms, before), message, outcomes)
    return outcomes


def _split(priced: pa.Table, message: np.ndarray, outcomes: list[MessageOutcome]) -> None:
    """Each message's rows of the priced table (slices: no copy when rows are in order)."""
    if len(message) > 1 and (np.diff(message) < 0).any():
        order = np.argsort(message, kind="stable")
        priced, message = priced.take(pa.array(order)), message[order]
    numbers, starts, counts = np.unique(message, return_index=True, return_counts=True)
    for number, start, count in zip(numbers.tolist(), starts.tolist(), counts.tolist(), strict=True):
        outcomes[number].priced = priced.slice(start, count)


@dataclass(frozen=True)
class _Rows:
    """The combined usage table, and for each row its message and its position in it."""

    usage: pa.Table
    message: np.ndarray
    position: np.ndarray


def _recheck(
    rows: _Rows,
    flagged: np.ndarray,
    batched: set[int],
    values: Sequence[bytes | None],
    codec: UsageCodec,
    providers: frozenset[str],
    outcomes: list[MessageOutcome],
) -> tuple[pa.Table, np.ndarray]:
    """The valid rows and their messages: the unflagged rows as they are, the flagged ones the
    model accepts as it normalized them; the others become dead letters with their field errors."""
    accepted: list[UsageEvent] = []
    accepted_message: list[int] = []
    accepted_position: list[int] = []
    for row in np.flatnonzero(flagged).tolist():
        number = int(rows.message[row])
        record = row_record(rows.usage, row)
        try:
            accepted.append(UsageEvent.parse(validation_input(record), providers))
            accepted_message.append(number)
            accepted_position.append(int(rows.position[row]))
        except EventValidationError as exc:
            value = values[number]
            if number in batched:
                letter = DeadLetter.from_error(exc, int(rows.position[row]))
                outcomes[number].dead.append((letter, _alone(codec, record, value)))
            else:
                outcomes[number].dead.append((DeadLetter.from_error(exc), value))
    clean = rows.usage.filter(pa.array(~flagged))
    kept = rows.message[~flagged]
    if not accepted:
        return clean, kept
    normalized = table_from_events(accepted).cast(clean.schema)
    usage = pa.concat_tables([clean, normalized]).combine_chunks()
    message = np.concatenate([kept, accepted_message])
    # Back in consumption order (message, then place in it): tier volume counts in that order.
    position = np.concatenate([rows.position[~flagged], accepted_position])
    order = np.lexsort((position, message))
    return usage.take(pa.array(order)), message[order]


def _alone(codec: UsageCodec, record: dict[str, object], batch: bytes | None) -> bytes | None:
    """The event as a single-event message; the whole batch (its index in the headers) when
    the single-event schema cannot hold what the batch held, e.g. an endpoint without a source."""
    try:
        return codec.encode_usage_record(record)
    except (ValueError, TypeError):
        return batch
