"""Cost queries: list, aggregate, summary (the seeds' contract)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AggregateRequestDep, FiltersDep, PageDep, QueriesDep
from schemas.query import CostAggregate, CostPage, CostSummary

router = APIRouter(prefix="/api/v1/costs", tags=["costs"])


@router.get("", response_model=CostPage)
def list_costs(queries: QueriesDep, filters: FiltersDep, page: PageDep) -> CostPage:
    """Cost records, newest first, ``page``/``per_page`` paginated with ``has_more``."""
    return queries.list_costs(filters, page)


@router.get("/aggregate", response_model=CostAggregate)
def aggregate_costs(queries: QueriesDep, request: AggregateRequestDep) -> CostAggregate:
    """Totals grouped by any of provider, model, organization_id, project_id, optionally per hour or day."""
    filters, agg = request
    return queries.aggregate(filters, agg)


@router.get("/summary", response_model=CostSummary)
def cost_summary(queries: QueriesDep, filters: FiltersDep) -> CostSummary:
    """Total cost, requests, average cost per request, by provider and by model."""
    return queries.summary(filters)
