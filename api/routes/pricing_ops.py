"""Pricing operations over stored events: what is unpriced, and pricing a range again.

Registered before :mod:`api.routes.pricing`, so ``/missing`` and ``/reprice`` are never read
as rule ids.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.auth import PrincipalDep
from api.deps import ContextDep, ControlDep, FiltersDep, QueriesDep
from schemas.query import EARLIEST_DATE, LATEST_DATE, MissingPrices, instant
from streams.pricing import Pricer
from streams.reprice import reprice
from streams.rules import RuleBook

router = APIRouter(prefix="/api/v1/pricing", tags=["pricing"])

MAX_REPRICE_DAYS = 31
"""Longest range of one request; ``cost-ops reprice`` walks a longer one day by day."""


@router.get("/missing", response_model=MissingPrices)
def missing_prices(
    queries: QueriesDep, filters: FiltersDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> MissingPrices:
    """Unpriced events by provider, model and organization, each with the seeds' ``COST_001``
    error; add a price (``POST /api/v1/pricing``), then reprice the range."""
    return queries.missing(filters, limit)


class RepriceRequest(BaseModel):
    """``[start_date, end_date)``; a date means its midnight UTC (``end_date`` a date: the
    whole day included)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_date: datetime | date
    end_date: datetime | date
    organization_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _day(cls, value: object) -> object:
        # "2025-03-01" is that day (as an end: all of it), not the instant it starts.
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else value

    @property
    def start(self) -> datetime:
        return instant(self.start_date, end=False)

    @property
    def end(self) -> datetime:
        return instant(self.end_date, end=True)

    @model_validator(mode="after")
    def _ordered(self) -> RepriceRequest:
        for name, value in (("start_date", self.start), ("end_date", self.end)):
            if not EARLIEST_DATE <= value.date() <= LATEST_DATE:
                raise ValueError(f"{name} must be between {EARLIEST_DATE} and {LATEST_DATE}")
        if self.end <= self.start:
            raise ValueError("end_date must be after start_date")
        if self.end - self.start > timedelta(days=MAX_REPRICE_DAYS):
            raise ValueError(f"a range of at most {MAX_REPRICE_DAYS} days per request (the CLI splits longer ones)")
        return self


class RepriceResponse(BaseModel):
    start_date: datetime
    end_date: datetime
    organization_id: str | None
    events: int
    priced: int
    unpriced: int
    rules_version: int


@router.post("/reprice", response_model=RepriceResponse)
async def reprice_range(
    request: RepriceRequest, context: ContextDep, control: ControlDep, principal: PrincipalDep
) -> RepriceResponse:
    """Price the stored events of a range again with today's rules; each event's new price
    replaces its old one (never added to it). Non-admins reprice their organization's only."""
    request = request.model_copy(update={"organization_id": principal.scope(request.organization_id)})
    version = await asyncio.to_thread(control.version)
    rules = await asyncio.to_thread(control.all_rules)
    pricer = Pricer(context.catalog, RuleBook.of(rules, version))
    result = await asyncio.to_thread(
        reprice, context.store, pricer, request.start, request.end, request.organization_id
    )
    return RepriceResponse(
        start_date=request.start,
        end_date=request.end,
        organization_id=request.organization_id,
        events=result.events,
        priced=result.priced,
        unpriced=result.unpriced,
        rules_version=version,
    )
