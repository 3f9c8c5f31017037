"""One message through the pricing stage: bytes in, a priced record or a dead letter out."""

from __future__ import annotations

from datetime import datetime

from schemas.codec import UsageCodec, usage_from_record
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.priced import PricedUsage
from streams.pricing import PriceCatalog, price_event


def price_message(
    value: bytes | None,
    codec: UsageCodec,
    catalog: PriceCatalog,
    providers: frozenset[str],
    now: datetime,
) -> PricedUsage | DeadLetter:
    """Decode, validate again and price one ``usage-events`` message.

    Validation runs again here because producers other than our API publish to the topic:
    a record that decodes but breaks a rule is a dead letter, not a cost.
    """
    try:
        record = codec.serde.decode(value)
        event = usage_from_record(record, providers)
    except (DecodeError, EventValidationError) as exc:
        return DeadLetter.from_error(exc)
    return price_event(event, catalog, now)
