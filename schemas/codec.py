"""Mapping between the pydantic models and their Avro records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.priced import COST_PLACES, CostBreakdown, PricedUsage, PricingStatus
from schemas.registry import PRICED_BATCH, PRICED_USAGE, USAGE_BATCH, USAGE_EVENT
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent


def usage_to_record(event: UsageEvent) -> dict[str, Any]:
    return event.model_dump(mode="python")


def usage_from_record(record: dict[str, Any], providers: frozenset[str] | None = None) -> UsageEvent:
    """Validate a decoded record again: a producer that skipped validation must not get past here."""
    return UsageEvent.parse(record, providers)


def priced_to_record(priced: PricedUsage) -> dict[str, Any]:
    record = usage_to_record(priced.event)
    cost = priced.cost
    record.update(
        pricing_status=priced.pricing_status.value,
        input_cost=cost.input_cost if cost else None,
        cached_cost=cost.cached_cost if cost else None,
        output_cost=cost.output_cost if cost else None,
        reasoning_cost=cost.reasoning_cost if cost else None,
        total_cost=cost.total_cost.quantize(COST_PLACES) if cost else None,
        currency=cost.currency if cost else "USD",
        price_source=cost.price_source if cost else None,
        unpriced_reason=priced.unpriced_reason,
        priced_at=priced.priced_at,
    )
    return record


def priced_from_record(record: dict[str, Any]) -> PricedUsage:
    usage_fields = UsageEvent.model_fields
    event = UsageEvent.model_validate(
        {k: v for k, v in record.items() if k in usage_fields},
        context={"providers": frozenset({record["provider"]})},
    )
    status = PricingStatus(record["pricing_status"])
    cost = None
    if status is PricingStatus.PRICED:
        cost = CostBreakdown(
            input_cost=record["input_cost"],
            cached_cost=record["cached_cost"],
            output_cost=record["output_cost"],
            reasoning_cost=record["reasoning_cost"],
            currency=record["currency"],
            price_source=record["price_source"] or "",
        )
    return PricedUsage(
        event=event,
        pricing_status=status,
        cost=cost,
        unpriced_reason=record.get("unpriced_reason"),
        priced_at=record["priced_at"],
    )


class UsageCodec:
    """Bytes <-> models for the pipeline's two record types.

    Args:
        serde: the wire-format serde.
        usage_subject / priced_subject: Schema Registry subjects (``<topic>-value``).
    """

    def __init__(self, serde: AvroSerde, usage_subject: str, priced_subject: str) -> None:
        self.serde = serde
        self.usage_subject = usage_subject
        self._priced_subject = priced_subject

    def encode_usage(self, event: UsageEvent) -> bytes:
        return self.serde.encode(USAGE_EVENT, self.usage_subject, usage_to_record(event))

    def encode_usage_record(self, record: dict[str, Any]) -> bytes:
        """One decoded usage record on its own again (a dead letter taken out of a batch)."""
        return self.serde.encode(USAGE_EVENT, self.usage_subject, record)

    def encode_usage_batch(self, events: Sequence[UsageEvent]) -> bytes:
        return self.serde.encode(USAGE_BATCH, self.usage_subject, {"events": [usage_to_record(e) for e in events]})

    def encode_priced(self, priced: PricedUsage) -> bytes:
        return self.serde.encode(PRICED_USAGE, self._priced_subject, priced_to_record(priced))

    def encode_priced_batch(self, priced: Sequence[PricedUsage]) -> bytes:
        return self.serde.encode(PRICED_BATCH, self._priced_subject, {"events": [priced_to_record(p) for p in priced]})

    def decode_records(self, data: bytes | None) -> list[dict[str, Any]]:
        """The records of a message: one for a single-event message, all of a batch's."""
        record = self.serde.decode(data)
        events = record.get("events") if set(record) == {"events"} else None
        return list(events) if isinstance(events, list) else [record]
