"""Cost queries: list, aggregate, summary (the seeds' contract)."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import PrincipalDep
from api.deps import AggregateRequestDep, FiltersDep, PageDep, QueriesDep
from llm_cost_ops.errors import NotFoundError
from schemas.query import CostAggregate, CostDetail, CostPage, CostSummary

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


@router.get("/{event_id}", response_model=CostDetail)
def get_cost(queries: QueriesDep, principal: PrincipalDep, event_id: str) -> CostDetail:
    """One event's cost with its provenance: the rule or catalog entry and the rates applied
    (``price_rates``), and for tiered rules the month's volume before it (``tier_volume``).
    An unpriced event carries the ``COST_001`` error."""
    detail = queries.detail(event_id, principal.scope(None))
    if detail is None:
        raise NotFoundError(f"no cost record with id {event_id}")
    return detail
