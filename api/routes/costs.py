"""Cost queries: list, aggregate, summary (the seeds' contract)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AggregateRequestDep, FiltersDep, PageDep, QueriesDep, TrendRequestDep, TrendsDep
from llm_cost_ops.errors import NotFoundError
from schemas.analytics import CostTrends
from schemas.query import CostAggregate, CostDetail, CostPage, CostSummary

router = APIRouter(prefix="/api/v1/costs", tags=["costs"])


@router.get("", response_model=CostPage)
def list_costs(queries: QueriesDep, filters: FiltersDep, page: PageDep) -> CostPage:
    """Cost records, newest first, ``page``/``per_page`` paginated with ``has_more``; or, from
    ``cursor`` (a page's ``next_cursor``), the rows after that page's last row, which rows
    written meanwhile cannot shift."""
    return queries.list_costs(filters, page)


@router.get("/aggregate", response_model=CostAggregate)
def aggregate_costs(queries: QueriesDep, request: AggregateRequestDep) -> CostAggregate:
    """Totals grouped by any of provider, model, organization_id, project_id, user_id, tag and
    metadata.KEY, always split by currency, optionally per minute, hour, day, week or month in
    ``timezone``. With ``tag`` an event counts in the group of each of its tags (so those groups
    add up to more than the total). With a granularity and both dates, periods without events
    are listed with zero totals for each group that has events in the range."""
    filters, agg = request
    return queries.aggregate(filters, agg)


@router.get("/trends", response_model=CostTrends)
def cost_trends(trends: TrendsDep, request: TrendRequestDep) -> CostTrends:
    """Cost per period of ``[start_date, end_date)`` with the change from the period before,
    and the whole range against the range of equal length before it (one currency: the
    ``currency`` filter, else USD)."""
    filters, series = request
    return trends.trends(filters, series)


@router.get("/summary", response_model=CostSummary)
def cost_summary(queries: QueriesDep, filters: FiltersDep) -> CostSummary:
    """Total cost, requests, average cost per request, by provider and by model."""
    return queries.summary(filters)


@router.get("/{event_id}", response_model=CostDetail)
def get_cost(queries: QueriesDep, event_id: str, filters: FiltersDep) -> CostDetail:
    """One event's cost with its provenance: the rule or catalog entry and the rates applied
    (``price_rates``), and for tiered rules the month's volume before it (``tier_volume``).
    An unpriced event carries the ``COST_001`` error."""
    detail = queries.detail(event_id, filters)
    if detail is None:
        raise NotFoundError(f"no cost record with id {event_id}")
    return detail
