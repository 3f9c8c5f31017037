"""What usage and cost calls return: small pydantic models with attribute access.

Money is ``Decimal``, parsed from the API's decimal strings (never through a float); times
are ``datetime``. Each model allows extra fields, so an API newer than the SDK adds
attributes instead of breaking it. These mirror the API's response shapes (``schemas.query``)
without importing the server's code, which would drag its dependencies into every client.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Result(BaseModel):
    """Base of every result: frozen, attribute access, unknown fields kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


class UsageAccepted(Result):
    """``POST /api/v1/usage``: Kafka has the record (it becomes queryable once priced)."""

    id: str
    status: str
    organization_id: str
    timestamp: datetime | None = None
    budget_exceeded: list[str] = []
    """Hard budgets the record is over, when the deployment flags rather than rejects."""


class BatchRejection(Result):
    index: int
    """Position of the record in the batch."""
    field_errors: dict[str, str] = {}
    code: str | None = None


class BatchResult(Result):
    """``POST /api/v1/usage/batch``: the valid records are published even when others are not."""

    status: str
    accepted: int
    ids: list[str]
    rejected: list[BatchRejection] = []
    budget_exceeded: list[dict[str, Any]] = []


class CostRecord(Result):
    """One priced (or unpriced: ``total_cost`` None, ``pricing_status`` "unpriced") event."""

    id: str
    timestamp: datetime
    provider: str
    model: str
    organization_id: str
    project_id: str | None = None
    user_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    pricing_status: str
    input_cost: Decimal | None = None
    cached_cost: Decimal | None = None
    cache_write_cost: Decimal | None = None
    output_cost: Decimal | None = None
    reasoning_cost: Decimal | None = None
    request_cost: Decimal | None = None
    total_cost: Decimal | None = None
    currency: str = "USD"
    price_source: str | None = None
    unpriced_reason: str | None = None


class CostDetail(CostRecord):
    """One event's cost with the rates applied and, for tiered rules, the month's prior volume."""

    tags: list[str] = []
    metadata: dict[str, str] = {}
    price_rates: dict[str, Any] | None = None
    tier_volume: int | None = None
    ingested_at: datetime | None = None
    priced_at: datetime | None = None
    error: dict[str, Any] | None = None


class UsageRecord(Result):
    id: str
    timestamp: datetime
    provider: str
    model: str
    model_version: str | None = None
    organization_id: str
    project_id: str | None = None
    user_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    latency_ms: int | None = None
    tags: list[str] = []
    metadata: dict[str, str] = {}
    pricing_status: str
    total_cost: Decimal | None = None
    currency: str = "USD"
    ingested_at: datetime | None = None


class Page(Result, Generic[T]):
    """One page of a listing; pass ``next_cursor`` as ``cursor`` for the next (None on the last)."""

    data: list[T]
    page: int = 1
    per_page: int
    total: int
    has_more: bool
    next_cursor: str | None = None


class CostGroup(Result):
    """One group of ``costs.aggregate``: the grouped dimensions (``provider``, ``metadata.team``,
    ...) are extra attributes, also reachable with :meth:`key`."""

    period_start: datetime | None = None
    currency: str
    total_cost: Decimal | None
    request_count: int
    unpriced_requests: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int

    def key(self, dimension: str) -> Any:
        """The group's value of ``dimension`` (a name like ``metadata.team`` is no attribute)."""
        return (self.model_extra or {}).get(dimension)


class CostAggregate(Result):
    group_by: list[str]
    granularity: str | None = None
    timezone: str = "UTC"
    data: list[CostGroup]


class Breakdown(Result):
    name: str
    currency: str = "USD"
    total_cost: Decimal | None
    requests: int
    unpriced_requests: int


class Period(Result):
    start: datetime | None = None
    end: datetime | None = None


class CostSummary(Result):
    """Totals in ``currency``; ``other_currencies`` holds what was priced in others (never added)."""

    period: Period
    organization_id: str | None = None
    total_cost: Decimal
    total_requests: int
    priced_requests: int
    unpriced_requests: int
    avg_cost_per_request: Decimal
    total_tokens: int
    currency: str = "USD"
    by_provider: list[Breakdown] = []
    by_model: list[Breakdown] = []
    other_currencies: list[Breakdown] = []


class TrendPoint(Result):
    period_start: datetime
    total_cost: Decimal
    requests: int
    unpriced_requests: int
    total_tokens: int
    change: Decimal
    change_percent: float | None = None


class TrendTotals(Result):
    start: datetime
    end: datetime
    total_cost: Decimal
    requests: int
    unpriced_requests: int
    total_tokens: int


class TrendComparison(Result):
    current: TrendTotals
    previous: TrendTotals
    change: Decimal
    change_percent: float | None = None
    requests_change: int
    tokens_change: int


class CostTrends(Result):
    granularity: str
    timezone: str
    currency: str
    data: list[TrendPoint]
    overall: TrendComparison


class Freshness(Result):
    p50_ms: float
    p99_ms: float
    max_ms: float


class UsageStats(Result):
    events: int
    priced_requests: int
    unpriced_requests: int
    total_tokens: int
    first_event: datetime | None = None
    last_event: datetime | None = None
    freshness: Freshness | None = None


class ExportResult(Result):
    """What ``export.create`` wrote."""

    path: str | None = None
    """The file written, when a path was given (None for a file object)."""
    filename: str | None = None
    """The API's name for the export (``costs-<from>-<to>.<ext>``)."""
    format: str
    bytes_written: int
    total: int | None = None
    """Records matching the filters when the export started (``X-Total-Count``)."""
