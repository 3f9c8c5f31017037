"""Query parameters and response models of the cost API (the seeds' shapes).

Money is serialized as a decimal string with 10 places ("0.0375000000"): JSON numbers are
floats to most clients, and a float is not money.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

GroupBy = Literal["provider", "model", "organization_id", "project_id"]
Granularity = Literal["hour", "day"]

# ClickHouse DateTime64 covers 1900-01-01 to 2299-12-31.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2299, 12, 30)


def as_utc(value: datetime) -> datetime:
    """Naive values are UTC (the storage zone); aware ones are converted, not relabelled."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
Money = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]
"""A Decimal serialized as a plain decimal string ("0.0000004500", never "4.5E-7")."""


def instant(value: date | datetime, end: bool) -> datetime:
    """The instant a date or timestamp stands for; a bare date as an ``end`` covers its whole day."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    # A bare date covers that whole day: end_date=2025-01-31 includes the 31st.
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time.min, tzinfo=UTC)


class CostFilterParams(BaseModel):
    """Filters shared by every cost query. Dates are ISO 8601 (``2025-01-31`` or a timestamp);
    ``start_date`` is inclusive, ``end_date`` exclusive for timestamps and whole-day for dates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str | None = Field(default=None, max_length=128)
    project_id: str | None = Field(default=None, max_length=128)
    provider: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    """Only costs in this currency (ISO 4217). Amounts of different currencies are never added."""
    start_date: date | datetime | None = None
    end_date: date | datetime | None = None

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            parsed: date = (
                date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value.replace("Z", "+00:00"))
            )
        except ValueError:
            raise ValueError("must be in ISO 8601 format (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)") from None
        day = parsed.date() if isinstance(parsed, datetime) else parsed
        if not EARLIEST_DATE <= day <= LATEST_DATE:
            raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
        return parsed

    @property
    def start(self) -> datetime | None:
        return instant(self.start_date, end=False) if self.start_date is not None else None

    @property
    def end(self) -> datetime | None:
        return instant(self.end_date, end=True) if self.end_date is not None else None

    @field_validator("end_date")
    @classmethod
    def _ordered(cls, value: date | datetime | None, info: object) -> date | datetime | None:
        data = getattr(info, "data", {})
        start = data.get("start_date")
        if value is not None and start is not None and instant(value, True) <= instant(start, False):
            raise ValueError("must be after start_date")
        return value


class PageParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=100, ge=1)


class AggregateParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group_by: tuple[GroupBy, ...] = ()
    granularity: Granularity | None = None


class CostRecord(BaseModel):
    """One priced (or unpriced) usage event."""

    id: str
    timestamp: UtcDatetime
    provider: str
    model: str
    organization_id: str
    project_id: str | None
    user_id: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    pricing_status: str
    input_cost: Money | None
    cached_cost: Money | None
    cache_write_cost: Money | None
    output_cost: Money | None
    reasoning_cost: Money | None
    request_cost: Money | None
    total_cost: Money | None
    currency: str
    price_source: str | None
    unpriced_reason: str | None


class PricingError(BaseModel):
    code: str = "COST_001"
    message: str


class CostDetail(CostRecord):
    """One event's cost with its provenance: the rates applied (``price_rates``: the custom
    rule or catalog entry, as JSON) and, for tiered rules, the month's volume before it, so
    the cost can be explained and recomputed from the event's tokens."""

    model_version: str | None
    tags: list[str]
    metadata: dict[str, str]
    price_rates: dict[str, Any] | None
    tier_volume: int | None
    ingested_at: UtcDatetime
    priced_at: UtcDatetime
    error: PricingError | None = None
    """``COST_001`` when the event is unpriced."""


class MissingPrice(BaseModel):
    """Unpriced events of one provider, model and organization (``GET /api/v1/pricing/missing``)."""

    provider: str
    model: str
    organization_id: str
    events: int
    total_tokens: int
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    error: PricingError


class MissingPrices(BaseModel):
    data: list[MissingPrice]
    total: int


class CostPage(BaseModel):
    data: list[CostRecord]
    page: int
    per_page: int
    total: int
    has_more: bool


class CostGroup(BaseModel):
    """One group of ``costs/aggregate``; only the requested dimensions are set."""

    model_config = ConfigDict(extra="allow")

    period_start: UtcDatetime | None = None
    currency: str
    """Groups are always split by currency: amounts of different currencies are never added."""
    total_cost: Money | None
    """Null when no request of the group could be priced."""
    request_count: int
    unpriced_requests: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int


class CostAggregate(BaseModel):
    group_by: list[str]
    granularity: str | None
    data: list[CostGroup]


class Breakdown(BaseModel):
    """Cost of one provider or model. ``total_cost`` is null when none of its requests could
    be priced (unknown is not zero)."""

    name: str
    currency: str = "USD"
    total_cost: Money | None
    requests: int
    unpriced_requests: int


class Period(BaseModel):
    start: datetime | None
    end: datetime | None


class CostSummary(BaseModel):
    """The seeds' summary. ``avg_cost_per_request`` divides by priced requests: an unpriced
    request has no cost, which is not the same as a zero cost."""

    period: Period
    organization_id: str | None
    total_cost: Money
    total_requests: int
    priced_requests: int
    unpriced_requests: int
    avg_cost_per_request: Money
    total_tokens: int
    currency: str = "USD"
    """The currency of ``total_cost`` and ``avg_cost_per_request`` (the ``currency`` filter, else USD)."""
    by_provider: list[Breakdown]
    by_model: list[Breakdown]
    other_currencies: list[Breakdown] = []
    """Totals of the costs priced in other currencies (``name`` is the currency): never added up."""


class Freshness(BaseModel):
    """Milliseconds from ``ingested_at`` (the API or producer accepted the event) to the row
    being written to ClickHouse, i.e. visible to every query."""

    p50_ms: float
    p99_ms: float
    max_ms: float


class UsageStats(BaseModel):
    events: int
    priced_requests: int
    unpriced_requests: int
    total_tokens: int
    first_event: UtcDatetime | None
    last_event: UtcDatetime | None
    freshness: Freshness | None
