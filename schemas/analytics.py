"""Response models of ``costs/trends`` and the ``analytics`` endpoints. Money is Decimal
(serialized as a string); amounts of different currencies are never added, so every money
figure sits next to its currency. Latencies are floats: they are measurements, not money."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.period import Granularity, check_timezone
from schemas.query import Money, UtcDatetime, ZonedDatetime


class SeriesParams(BaseModel):
    """The time axis of trends and analytics: periods of ``granularity`` in ``timezone``, and
    how many entries the "top" lists keep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    granularity: Granularity = "day"
    timezone: str = "UTC"
    limit: int = Field(default=10, ge=1, le=100)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


# --- costs/trends ---------------------------------------------------------------------------


class TrendPoint(BaseModel):
    period_start: ZonedDatetime
    total_cost: Money
    requests: int
    unpriced_requests: int
    total_tokens: int
    change: Money
    """``total_cost`` minus the previous period's (for the first period: the period before the range)."""
    change_percent: float | None
    """``change`` as a percentage of the previous period's cost; null when that cost was zero."""


class TrendTotals(BaseModel):
    start: UtcDatetime
    end: UtcDatetime
    total_cost: Money
    requests: int
    unpriced_requests: int
    total_tokens: int


class TrendComparison(BaseModel):
    """The whole range against the range of equal length just before it."""

    current: TrendTotals
    previous: TrendTotals
    change: Money
    change_percent: float | None
    requests_change: int
    tokens_change: int


class CostTrends(BaseModel):
    granularity: Granularity
    timezone: str
    currency: str
    """Costs in this currency only (the ``currency`` filter, else USD)."""
    data: list[TrendPoint]
    overall: TrendComparison


# --- analytics/usage ------------------------------------------------------------------------


class TokenCounts(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageTotals(TokenCounts):
    cached_tokens: int
    reasoning_tokens: int
    avg_tokens_per_request: float | None


class UsagePoint(TokenCounts):
    period_start: ZonedDatetime


class ProviderUsage(TokenCounts):
    provider: str


class ModelUsage(TokenCounts):
    provider: str
    model: str


class UsageAnalytics(BaseModel):
    granularity: Granularity
    timezone: str
    totals: UsageTotals
    series: list[UsagePoint]
    by_provider: list[ProviderUsage]
    by_model: list[ModelUsage]


# --- analytics/costs ------------------------------------------------------------------------


class CostPoint(BaseModel):
    period_start: ZonedDatetime
    total_cost: Money
    requests: int
    unpriced_requests: int


class RankedCost(BaseModel):
    """A project (``name`` null for events without one) or a model, by cost."""

    name: str | None
    provider: str | None = None
    total_cost: Money
    requests: int


class CurrencyCosts(BaseModel):
    currency: str
    total_cost: Money
    requests: int
    unpriced_requests: int
    avg_cost_per_request: Money | None
    """Over priced requests; null when none was priced."""
    series: list[CostPoint]
    top_projects: list[RankedCost]
    top_models: list[RankedCost]


class CostAnalytics(BaseModel):
    granularity: Granularity
    timezone: str
    currencies: list[CurrencyCosts]


# --- analytics/providers and analytics/models ------------------------------------------------


class ProviderComparison(BaseModel):
    provider: str
    currency: str
    requests: int
    unpriced_requests: int
    total_tokens: int
    total_cost: Money | None
    avg_cost_per_request: Money | None
    avg_latency_ms: float | None
    """Over the requests that reported a latency; null when none did."""


class ModelComparison(BaseModel):
    provider: str
    model: str
    currency: str
    requests: int
    unpriced_requests: int
    total_tokens: int
    total_cost: Money | None
    cost_per_1k_tokens: Money | None
    """Cost of the priced requests per 1000 of their tokens."""
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    """Approximate (ClickHouse ``quantile``, a sample of up to 8192 values per group)."""


class ProviderComparisons(BaseModel):
    data: list[ProviderComparison]


class ModelComparisons(BaseModel):
    data: list[ModelComparison]
