"""The priced usage record: a usage event plus its exact cost, or why it has none."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.usage import UsageEvent

COST_PLACES = Decimal("0.0000000001")
"""Every cost is a Decimal quantized to 10 places (Decimal(38, 10) in ClickHouse)."""


class PricingStatus(StrEnum):
    PRICED = "priced"
    UNPRICED = "unpriced"


class CostBreakdown(BaseModel):
    """Cost components; they add up to ``total_cost`` exactly."""

    model_config = ConfigDict(frozen=True)

    input_cost: Decimal
    cached_cost: Decimal
    output_cost: Decimal
    reasoning_cost: Decimal
    currency: str = "USD"
    price_source: str

    @property
    def total_cost(self) -> Decimal:
        return self.input_cost + self.cached_cost + self.output_cost + self.reasoning_cost


class PricedUsage(BaseModel):
    """What the pricing agent produces for every valid event. Unpriced events keep null costs
    (never zero) and say why in ``unpriced_reason``."""

    model_config = ConfigDict(frozen=True)

    event: UsageEvent
    pricing_status: PricingStatus
    cost: CostBreakdown | None
    unpriced_reason: str | None = None
    priced_at: datetime

    @field_validator("priced_at")
    @classmethod
    def _millis(cls, value: datetime) -> datetime:
        # The Avro field holds milliseconds; keep the model equal to its decoded self.
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
