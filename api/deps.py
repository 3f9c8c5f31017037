"""Route dependencies: the shared context and the parsed query parameters."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from pydantic import ValidationError

from api.auth import PrincipalDep
from api.context import ApiContext
from llm_cost_ops.errors import InvalidInputError, UnavailableError
from llm_cost_ops.producer import UsageProducer
from schemas.control import Actor
from schemas.errors import field_errors
from schemas.query import AggregateParams, CostFilterParams, PageParams
from sinks.control_store import ControlStore
from sinks.queries import CostQueries

T = TypeVar("T")


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_queries(context: ContextDep) -> CostQueries:
    return context.queries


def get_producer(context: ContextDep) -> UsageProducer:
    if context.producer is None:
        raise UnavailableError("ingestion is not available on this process", retry_after=5)
    return context.producer


def get_control(context: ContextDep) -> ControlStore:
    if context.control is None:
        raise UnavailableError("pricing rules are not available on this process", retry_after=5)
    return context.control


def get_actor(principal: PrincipalDep) -> Actor:
    """Who makes a change, for the audit log: the authenticated caller and its address."""
    return principal.actor


QueriesDep = Annotated[CostQueries, Depends(get_queries)]
ProducerDep = Annotated[UsageProducer, Depends(get_producer)]
ControlDep = Annotated[ControlStore, Depends(get_control)]
ActorDep = Annotated[Actor, Depends(get_actor)]


def _capture(builder: Callable[..., T]) -> Callable[..., T | InvalidInputError]:
    """Wrap a parameter builder so its validation error is returned, not raised (keeps the
    builder's signature, which FastAPI reads to declare the query parameters)."""

    @functools.wraps(builder)
    def wrapper(*args: Any, **kwargs: Any) -> T | InvalidInputError:
        try:
            return builder(*args, **kwargs)
        except InvalidInputError as exc:
            return exc

    return wrapper


async def json_body(request: Request, *, exact: bool = False, empty: Any = None) -> Any:
    """The request body as JSON, or a 422 naming ``body``. ``exact``: numbers with a fraction
    become Decimals (a float would lose digits of a price before validation). ``empty``: what
    an empty body stands for (``None``: an empty body is invalid JSON like any other)."""
    raw = await request.body()
    if empty is not None and not raw.strip():
        return empty
    try:
        return json.loads(raw, parse_float=Decimal) if exact else json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError("request body is not valid JSON", {"body": f"must be valid JSON ({exc})"}) from None


def invalid_parameters(exc: ValidationError) -> InvalidInputError:
    fields = field_errors(exc)
    return InvalidInputError(f"invalid query parameters: {', '.join(fields)}", fields)


def cost_filters(
    principal: PrincipalDep,
    organization_id: str | None = None,
    project_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    currency: Annotated[str | None, Query(description="ISO 4217 code: only costs in this currency")] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601 date or timestamp, inclusive")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; a date includes that whole day")] = None,
) -> CostFilterParams:
    # The caller's organization, in the query itself: another one is refused (403).
    organization_id = principal.scope(organization_id)
    try:
        # model_validate: the dates arrive as strings and the model parses them.
        return CostFilterParams.model_validate(
            {
                "organization_id": organization_id,
                "project_id": project_id,
                "provider": provider,
                "model": model,
                "currency": currency.upper() if currency else None,
                "start_date": start_date,
                "end_date": end_date,
            }
        )
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def page_params(context: ContextDep, page: int = 1, per_page: int = 100) -> PageParams:
    try:
        # per_page is capped, not refused: asking for "everything" gets the largest page.
        return PageParams(page=page, per_page=min(per_page, context.settings.api.max_per_page))
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def aggregate_params(
    group_by: Annotated[
        list[str] | None, Query(description="provider, model, organization_id, project_id; comma-separated")
    ] = None,
    granularity: Annotated[str | None, Query(description="hour or day")] = None,
) -> AggregateParams:
    keys = [k.strip() for value in group_by or [] for k in value.split(",") if k.strip()]
    try:
        return AggregateParams(group_by=tuple(dict.fromkeys(keys)), granularity=granularity)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def aggregate_request(
    filters: Annotated[CostFilterParams | InvalidInputError, Depends(_capture(cost_filters))],
    agg: Annotated[AggregateParams | InvalidInputError, Depends(_capture(aggregate_params))],
) -> tuple[CostFilterParams, AggregateParams]:
    """Filters and grouping together, so one 422 names every bad parameter of both."""
    errors = [e for e in (filters, agg) if isinstance(e, InvalidInputError)]
    if errors:
        fields = {k: v for e in errors for k, v in e.field_errors.items()}
        raise InvalidInputError(f"invalid query parameters: {', '.join(fields)}", fields)
    assert isinstance(filters, CostFilterParams) and isinstance(agg, AggregateParams)
    return filters, agg


FiltersDep = Annotated[CostFilterParams, Depends(cost_filters)]
PageDep = Annotated[PageParams, Depends(page_params)]
AggregateRequestDep = Annotated[tuple[CostFilterParams, AggregateParams], Depends(aggregate_request)]
