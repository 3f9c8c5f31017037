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
from schemas.analytics import SeriesParams
from schemas.control import Actor
from schemas.cursor import decode_cursor
from schemas.errors import field_errors
from schemas.period import MAX_PERIODS, Granularity, period_count_at_most
from schemas.query import METADATA_KEY, METADATA_PREFIX, AggregateParams, CostFilterParams, PageParams
from sinks.analytics_queries import AnalyticsQueries
from sinks.control_store import ControlStore
from sinks.queries import CostQueries
from sinks.trend_queries import TrendQueries

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
    request: Request,
    principal: PrincipalDep,
    organization_id: str | None = None,
    project_id: str | None = None,
    user_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    currency: Annotated[str | None, Query(description="ISO 4217 code: only costs in this currency")] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601 date or timestamp, inclusive")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; a date includes that whole day")] = None,
    tags: Annotated[
        list[str] | None,
        Query(description="only events carrying every one of these tags; repeat the parameter or separate by commas"),
    ] = None,
) -> CostFilterParams:
    """The filters of every cost and usage query. Besides the declared parameters, each
    ``metadata.KEY=value`` parameter (``?metadata.team=customer-support``) keeps the events
    whose metadata has KEY with that value."""
    # The caller's organization, in the query itself: another one is refused (403).
    organization_id = principal.scope(organization_id)
    metadata, errors = metadata_filters(request)
    try:
        # model_validate: the dates arrive as strings and the model parses them.
        filters = CostFilterParams.model_validate(
            {
                "organization_id": organization_id,
                "project_id": project_id,
                "user_id": user_id,
                "provider": provider,
                "model": model,
                "currency": currency.upper() if currency else None,
                "start_date": start_date,
                "end_date": end_date,
                "tags": tuple(dict.fromkeys(t.strip() for value in tags or [] for t in value.split(",") if t.strip())),
                "metadata": metadata,
            }
        )
    except ValidationError as exc:
        errors = {**field_errors(exc), **errors}
    if errors:
        raise InvalidInputError(f"invalid query parameters: {', '.join(errors)}", errors)
    return filters


def metadata_filters(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    """(filters, errors) of the ``metadata.KEY=value`` query parameters; an error names the
    parameter as it was given."""
    metadata: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if not name.startswith(METADATA_PREFIX):
            continue
        key = name.removeprefix(METADATA_PREFIX)
        if not METADATA_KEY.match(key):
            errors[name] = "metadata key must be 1 to 100 letters, digits or _ . : -"
        elif not 0 < len(value) <= 1000:
            errors[name] = "must be 1 to 1000 characters"
        elif key in metadata and metadata[key] != value:
            errors[name] = "must be given once (an event has one value per key)"
        else:
            metadata[key] = value
    return metadata, errors


def page_params(
    context: ContextDep,
    page: int = 1,
    per_page: int = 100,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page: resume after its last row (keyset paging)")
    ] = None,
) -> PageParams:
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except ValueError as exc:
            raise InvalidInputError("invalid cursor", {"cursor": str(exc)}) from None
        if page != 1:
            raise InvalidInputError("page and cursor exclude each other", {"page": "must be omitted with cursor"})
    try:
        # per_page is capped, not refused: asking for "everything" gets the largest page.
        return PageParams(page=page, per_page=min(per_page, context.settings.api.max_per_page), after=after)
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def aggregate_params(
    group_by: Annotated[
        list[str] | None,
        Query(
            description="provider, model, organization_id, project_id, user_id, tag, metadata.KEY; comma-separated. "
            "With tag, an event counts in the group of each of its tags"
        ),
    ] = None,
    granularity: Annotated[str | None, Query(description="minute, hour, day, week (from Monday) or month")] = None,
    timezone: Annotated[str, Query(description="IANA time zone the periods start in, e.g. Europe/Paris")] = "UTC",
    fill_gaps: Annotated[
        bool, Query(description="with a granularity and both dates, list periods without events as zeros")
    ] = True,
) -> AggregateParams:
    keys = [k.strip() for value in group_by or [] for k in value.split(",") if k.strip()]
    try:
        return AggregateParams(
            group_by=tuple(dict.fromkeys(keys)),
            granularity=granularity,  # type: ignore[arg-type]
            timezone=timezone,
            fill_gaps=fill_gaps,
        )
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def raise_together(*parsed: object) -> None:
    """One 422 naming every bad parameter of the parsers that failed (their errors, as
    :func:`_capture` returned them)."""
    errors = [e for e in parsed if isinstance(e, InvalidInputError)]
    if errors:
        fields = {k: v for e in errors for k, v in e.field_errors.items()}
        raise InvalidInputError(f"invalid query parameters: {', '.join(fields)}", fields)


def aggregate_request(
    filters: Annotated[CostFilterParams | InvalidInputError, Depends(_capture(cost_filters))],
    agg: Annotated[AggregateParams | InvalidInputError, Depends(_capture(aggregate_params))],
) -> tuple[CostFilterParams, AggregateParams]:
    """Filters and grouping together, so one 422 names every bad parameter of both."""
    raise_together(filters, agg)
    assert isinstance(filters, CostFilterParams) and isinstance(agg, AggregateParams)
    check_series_size(filters, agg.granularity)
    return filters, agg


def check_series_size(filters: CostFilterParams, granularity: Granularity | None) -> None:
    """A 422 naming ``granularity`` when ``[start_date, end_date)`` holds more than
    :data:`MAX_PERIODS` periods of it (every one of which a gap-filled series would list)."""
    if granularity is None or filters.start is None or filters.end is None:
        return
    if period_count_at_most(filters.start, filters.end, granularity) > MAX_PERIODS:
        raise InvalidInputError(
            "too many periods",
            {"granularity": f"the date range has more than {MAX_PERIODS} periods of a {granularity}"},
        )


def series_params(
    granularity: Annotated[str, Query(description="minute, hour, day, week (from Monday) or month")] = "day",
    timezone: Annotated[str, Query(description="IANA time zone the periods start in, e.g. Europe/Paris")] = "UTC",
    limit: Annotated[int, Query(description="entries of each top list")] = 10,
) -> SeriesParams:
    try:
        return SeriesParams(granularity=granularity, timezone=timezone, limit=limit)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def series_request(
    filters: Annotated[CostFilterParams | InvalidInputError, Depends(_capture(cost_filters))],
    series: Annotated[SeriesParams | InvalidInputError, Depends(_capture(series_params))],
) -> tuple[CostFilterParams, SeriesParams]:
    """Filters and time axis together (one 422 for both); the range must fit the series."""
    raise_together(filters, series)
    assert isinstance(filters, CostFilterParams) and isinstance(series, SeriesParams)
    check_series_size(filters, series.granularity)
    return filters, series


def trend_request(
    request: Annotated[tuple[CostFilterParams, SeriesParams], Depends(series_request)],
) -> tuple[CostFilterParams, SeriesParams]:
    """A trend compares ``[start_date, end_date)`` with the range before it: both dates are needed."""
    filters, _ = request
    missing = {name: "is required for trends" for name in ("start_date", "end_date") if getattr(filters, name) is None}
    if missing:
        raise InvalidInputError(f"missing query parameters: {', '.join(missing)}", missing)
    return request


def get_analytics(context: ContextDep) -> AnalyticsQueries:
    return AnalyticsQueries(context.store, context.settings.clickhouse.rollups)


def get_trends(context: ContextDep) -> TrendQueries:
    return TrendQueries(context.store, context.settings.clickhouse.rollups)


FiltersDep = Annotated[CostFilterParams, Depends(cost_filters)]
SeriesRequestDep = Annotated[tuple[CostFilterParams, SeriesParams], Depends(series_request)]
TrendRequestDep = Annotated[tuple[CostFilterParams, SeriesParams], Depends(trend_request)]
AnalyticsDep = Annotated[AnalyticsQueries, Depends(get_analytics)]
TrendsDep = Annotated[TrendQueries, Depends(get_trends)]
PageDep = Annotated[PageParams, Depends(page_params)]
AggregateRequestDep = Annotated[tuple[CostFilterParams, AggregateParams], Depends(aggregate_request)]
