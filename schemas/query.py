"""Query parameters and response models of the cost API (the seeds' shapes).

Money is serialized as a decimal string with 10 places ("0.0375000000"): JSON numbers are
floats to most clients, and a float is not money.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from schemas.period import Granularity, check_timezone
from schemas.usage import MAX_TAGS, Tag

GROUP_COLUMNS = ("provider", "model", "organization_id", "project_id", "user_id", "tag")
"""What ``costs/aggregate`` groups by, besides ``metadata.KEY``. ``tag`` puts an event in the group
of each of its (distinct) tags: an event tagged ``a`` and ``b`` counts in both groups, so the
groups of ``tag`` add up to more than the total; untagged events form the group ``tag: null``."""

METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
"""Metadata keys that may be filtered (``metadata.team=x``) or grouped by (``metadata.team``)."""
METADATA_PREFIX = "metadata."

# ClickHouse DateTime64 covers 1900-01-01 to 2299-12-31.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2299, 12, 30)


def as_utc(value: datetime) -> datetime:
    """Naive values are UTC (the storage zone); aware ones are converted, not relabelled."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
ZonedDatetime = Annotated[datetime, AfterValidator(lambda v: v if v.tzinfo else v.replace(tzinfo=UTC))]
"""A timestamp kept in the zone it was given in (a period of a ``timezone``); naive means UTC."""
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
    user_id: str | None = Field(default=None, max_length=128)
    provider: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    tags: tuple[Tag, ...] = Field(default=(), max_length=MAX_TAGS)
    """Events carrying every one of these tags."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Events whose metadata has each of these keys with exactly this (non-empty) value."""
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

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not METADATA_KEY.match(key):
                raise ValueError(f"key {key!r} must be 1 to 100 letters, digits or _ . : -")
            if not 0 < len(item) <= 1000:
                raise ValueError(f"value of {key!r} must be 1 to 1000 characters")
        return value

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


class SortKey(BaseModel):
    """Where a listing stands: the (timestamp, organization_id, event_id) of a row, in the order
    of every listing (newest first, then organization and id ascending)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timestamp: UtcDatetime
    organization_id: str
    event_id: str


class PageParams(BaseModel):
    """Offset (``page``) or keyset (``after``: the sort key of the previous page's last row) paging."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=100, ge=1)
    after: SortKey | None = None


class AggregateParams(BaseModel):
    """Grouping of ``costs/aggregate``: any of :data:`GROUP_COLUMNS` and ``metadata.KEY``; periods
    of ``granularity`` starting at local boundaries of ``timezone``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_by: tuple[str, ...] = ()
    granularity: Granularity | None = None
    timezone: str = "UTC"
    fill_gaps: bool = False
    """List the periods without events (zero totals) when both dates bound the range. The HTTP
    parameter defaults to true; here the default keeps the query's rows as they are."""

    @field_validator("group_by")
    @classmethod
    def _whitelisted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            meta = key.removeprefix(METADATA_PREFIX) if key.startswith(METADATA_PREFIX) else None
            if key not in GROUP_COLUMNS and (meta is None or not METADATA_KEY.match(meta)):
                raise ValueError(f"{key!r} is not one of {', '.join(GROUP_COLUMNS)} or metadata.KEY")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


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


class UsageRecord(BaseModel):
    """One usage event as stored (``GET /api/v1/usage``), with its total cost."""

    id: str
    timestamp: UtcDatetime
    provider: str
    model: str
    model_version: str | None
    organization_id: str
    project_id: str | None
    user_id: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    latency_ms: int | None
    tags: list[str]
    metadata: dict[str, str]
    source_type: str | None
    source_endpoint: str | None
    pricing_status: str
    total_cost: Money | None
    currency: str
    ingested_at: UtcDatetime


class UsagePage(BaseModel):
    data: list[UsageRecord]
    page: int
    per_page: int
    total: int
    has_more: bool
    next_cursor: str | None = None
    """Pass as ``cursor`` for the rows after this page (null on the last page)."""


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
    next_cursor: str | None = None
    """Pass as ``cursor`` for the rows after this page (null on the last page)."""


class CostGroup(BaseModel):
    """One group of ``costs/aggregate``; only the requested dimensions are set."""

    model_config = ConfigDict(extra="allow")

    period_start: ZonedDatetime | None = None
    """The period's start in the requested ``timezone`` (with its offset)."""
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
    timezone: str = "UTC"
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
