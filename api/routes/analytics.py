"""Analytics: usage, costs, provider and model comparison (read-only, every cost filter applies).

``granularity``/``timezone`` shape the series; with both ``start_date`` and ``end_date`` every
period of the range is listed, empty ones with zeros. Money is per currency, never added across.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AnalyticsDep, FiltersDep, SeriesRequestDep
from schemas.analytics import CostAnalytics, ModelComparisons, ProviderComparisons, UsageAnalytics

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])


@router.get("/usage", response_model=UsageAnalytics)
def usage_analytics(analytics: AnalyticsDep, request: SeriesRequestDep) -> UsageAnalytics:
    """Requests and tokens: totals, a time series, and the split by provider and by model."""
    filters, series = request
    return analytics.usage(filters, series)


@router.get("/costs", response_model=CostAnalytics)
def cost_analytics(analytics: AnalyticsDep, request: SeriesRequestDep) -> CostAnalytics:
    """Per currency: total cost, a time series, and the ``limit`` costliest projects and models."""
    filters, series = request
    return analytics.costs(filters, series)


@router.get("/providers", response_model=ProviderComparisons)
def provider_comparison(analytics: AnalyticsDep, filters: FiltersDep) -> ProviderComparisons:
    """Per provider and currency: requests, tokens, cost, average cost per priced request, average latency."""
    return analytics.providers(filters)


@router.get("/models", response_model=ModelComparisons)
def model_comparison(analytics: AnalyticsDep, filters: FiltersDep) -> ModelComparisons:
    """Per model and currency: requests, cost per 1000 tokens, average and (approximate) p95 latency."""
    return analytics.models(filters)
