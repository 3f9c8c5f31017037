"""What pricing, budget, alert, forecast and anomaly calls return (see :mod:`.models` for the
conventions: Decimal money, parsed times, extra fields kept)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from llm_cost_ops.sdk.models import Result


class Tier(Result):
    threshold: int
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    cached_input_discount: Decimal | None = None
    cached_input_price_per_million: Decimal | None = None
    cache_write_price_per_million: Decimal | None = None
    reasoning_price_per_million: Decimal | None = None


class PricingStructure(Result):
    """``per_token``, ``per_request`` or ``tiered``; the fields of the other types are None."""

    type: str
    input_price_per_million: Decimal | None = None
    output_price_per_million: Decimal | None = None
    cached_input_discount: Decimal | None = None
    cached_input_price_per_million: Decimal | None = None
    cache_write_price_per_million: Decimal | None = None
    reasoning_price_per_million: Decimal | None = None
    price_per_request: Decimal | None = None
    included_tokens: int | None = None
    overage_price_per_million: Decimal | None = None
    tiers: list[Tier] = []


class PricingRule(Result):
    id: str
    provider: str
    model: str
    pricing_structure: PricingStructure
    currency: str
    effective_date: datetime
    end_date: datetime | None = None
    scope: str | None = None
    organization_id: str | None = None
    project_id: str | None = None


class PricingRuleList(Result):
    data: list[PricingRule]
    total: int


class ForecastPoint(Result):
    date: date
    value: Decimal
    lower_bound: Decimal
    upper_bound: Decimal


class HistorySpan(Result):
    start: date
    end: date
    days: int


class Forecast(Result):
    organization_id: str | None = None
    metric: str
    model: str
    horizon_days: int
    confidence_level: float
    currency: str | None = None
    history: HistorySpan
    predictions: list[ForecastPoint]
    total: ForecastPoint


class Anomaly(Result):
    date: date
    actual_cost: Decimal
    expected_cost: Decimal
    score: float
    method: str
    severity: str
    direction: str


class AnomalyReport(Result):
    organization_id: str | None = None
    method: str
    threshold: float | None = None
    currency: str
    data: list[Anomaly]


class Budget(Result):
    """A budget as defined (``budgets.create``/``update``/``delete``)."""

    id: str
    name: str
    organization_id: str
    project_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    period: str
    amount: Decimal
    currency: str
    thresholds: list[Decimal]
    enforcement: str
    created_at: datetime | None = None


class BudgetStatus(Budget):
    """A budget with its spend in the period containing the instant asked about."""

    scope: str
    period_start: datetime
    period_end: datetime
    spend: Decimal
    remaining: Decimal
    percent_used: float
    thresholds_reached: list[Decimal]
    exceeded: bool


class BudgetList(Result):
    data: list[BudgetStatus]
    as_of: datetime | None = None


class Alert(Result):
    alert_id: str
    type: str
    organization_id: str
    project_id: str | None = None
    model: str | None = None
    currency: str
    window_start: datetime
    window_end: datetime
    actual_cost: Decimal
    expected_cost: Decimal | None = None
    impact: Decimal | None = None
    score: float | None = None
    severity: str
    message: str
    created_at: datetime
    details: dict[str, Any] | None = None


class AlertPage(Result):
    data: list[Alert]
    page: int
    per_page: int
    total: int
    has_more: bool
