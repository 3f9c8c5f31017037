"""Alerts raised by the pipeline, the seeds' anomaly detection on daily costs, and forecasts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from api.auth import Principal, permit
from api.context import ApiContext
from api.deps import ContextDep, invalid_parameters, json_body
from llm_cost_ops.errors import InsufficientDataError
from schemas.alerts import AlertPage, AlertParams, Anomaly, AnomalyParams, AnomalyReport
from schemas.forecast import Forecast, ForecastPoint, ForecastRequest, HistorySpan
from schemas.priced import COST_PLACES, money
from streams.detectors import DetectorConfig, Method, score_series
from streams.forecast import MIN_POINTS, ForecastModel, NotEnoughHistoryError, forecast

router = APIRouter(prefix="/api/v1", tags=["alerts"])

ForecasterDep = Annotated[Principal, Depends(permit("read:costs"))]

MIN_DAYS = 7
"""Days of cost history the daily detector needs (the seeds' FORECAST_001 minimum)."""
WARMUP_DAYS = 56
"""Days before ``start_date`` read to learn the baseline (eight weeks: the weekly season)."""


def alert_params(
    context: ContextDep,
    principal: Annotated[Principal, Depends(permit("read:alerts"))],
    organization_id: str | None = None,
    type: Annotated[str | None, Query(description="cost.anomaly or budget.threshold")] = None,
    severity: Annotated[str | None, Query(description="low, medium, high or critical")] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601: alerts on windows from here")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; a date includes that whole day")] = None,
    page: int = 1,
    per_page: int = 100,
) -> AlertParams:
    try:
        return AlertParams.model_validate(
            {
                "organization_id": principal.scope(organization_id),
                "type": type,
                "severity": severity,
                "start_date": start_date,
                "end_date": end_date,
                "page": page,
                "per_page": min(per_page, context.settings.api.max_per_page),
            }
        )
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


def anomaly_params(
    principal: Annotated[Principal, Depends(permit("read:costs"))],
    start_date: str,
    end_date: str,
    organization_id: str | None = None,
    method: Annotated[str, Query(description="robust (default), zscore or iqr")] = "robust",
    threshold: Annotated[float | None, Query(description="score beyond which a day is anomalous")] = None,
    currency: str = "USD",
) -> AnomalyParams:
    try:
        return AnomalyParams.model_validate(
            {
                "organization_id": principal.scope(organization_id),
                "method": method,
                "threshold": threshold,
                "start_date": start_date,
                "end_date": end_date,
                "currency": currency.upper(),
            }
        )
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


@router.get("/alerts", response_model=AlertPage)
def list_alerts(context: ContextDep, params: Annotated[AlertParams, Depends(alert_params)]) -> AlertPage:
    """Anomaly and budget alerts, newest window first; filters on organization, type, severity, dates."""
    return context.alerts.list_alerts(params)


@router.get("/forecast/anomalies", response_model=AnomalyReport)
def detect_anomalies(context: ContextDep, params: Annotated[AnomalyParams, Depends(anomaly_params)]) -> AnomalyReport:
    """Days from ``start_date`` to ``end_date`` whose cost is anomalous, by the chosen method
    (the detector of the streaming alerts, on daily totals with a weekly season; the eight weeks
    before ``start_date`` teach the baseline)."""
    first = params.start_date - timedelta(days=WARMUP_DAYS)
    costs = context.alerts.daily_costs(params.organization_id, params.currency, first, params.end_date)
    if len(costs) < MIN_DAYS:
        raise InsufficientDataError(
            f"Insufficient historical data for anomaly detection (minimum {MIN_DAYS} days required)"
        )
    days = [min(costs) + timedelta(days=n) for n in range((params.end_date - min(costs)).days + 1)]
    config = DetectorConfig(
        method=Method(params.method),
        threshold=params.threshold,
        min_history=MIN_DAYS,
        history=WARMUP_DAYS + 366,
        seasons=(7,),
        level_windows=7,
        adapt_after=14,
        min_impact=Decimal(0),
    )
    seen = score_series([costs.get(day, Decimal(0)) for day in days], config)
    anomalies = [
        Anomaly(
            date=days[o.index],
            actual_cost=money(o.value),
            expected_cost=money(o.expected),
            score=round(o.score, 4),
            method=params.method,
            severity=o.severity or "low",
            direction=o.direction.value,
        )
        for o in seen
        if o.anomalous
        and days[o.index] >= params.start_date
        and o.expected is not None
        and o.score is not None
        and o.direction is not None
    ]
    return AnomalyReport(
        organization_id=params.organization_id,
        method=params.method,
        threshold=config.limit,
        currency=params.currency,
        data=anomalies,
    )


@router.post("/forecast/cost", response_model=Forecast)
async def forecast_cost(request: Request, context: ContextDep, principal: ForecasterDep) -> Forecast:
    """Daily cost for the next ``horizon_days`` by ``model`` (linear, moving_average,
    exponential_smoothing), with a ``confidence_level`` interval; ``FORECAST_001`` under 7 days."""
    return await asyncio.to_thread(_forecast, context, await _forecast_request(request, principal), "cost")


@router.post("/forecast/usage", response_model=Forecast)
async def forecast_usage(request: Request, context: ContextDep, principal: ForecasterDep) -> Forecast:
    """Daily tokens for the next ``horizon_days``; the same models and interval as costs."""
    return await asyncio.to_thread(_forecast, context, await _forecast_request(request, principal), "tokens")


async def _forecast_request(request: Request, principal: Principal) -> ForecastRequest:
    params = ForecastRequest.parse(await json_body(request, empty={}))
    return params.model_copy(update={"organization_id": principal.scope(params.organization_id)})


def _forecast(context: ApiContext, params: ForecastRequest, metric: Literal["cost", "tokens"]) -> Forecast:
    queries = context.alerts
    currency = params.currency if metric == "cost" else None
    last = queries.last_day(params.organization_id, currency)
    if last is None:
        raise InsufficientDataError(f"Insufficient historical data for forecast (minimum {MIN_POINTS} days required)")
    first = last - timedelta(days=params.history_days - 1)
    if metric == "cost":
        daily = queries.daily_costs(params.organization_id, params.currency, first, last)
    else:
        daily = queries.daily_tokens(params.organization_id, first, last)
    start = min(daily)  # from the first day with usage: days before it are not zero, they are unknown
    days = [start + timedelta(days=n) for n in range((last - start).days + 1)]
    try:
        predictions = forecast(
            [daily.get(day, Decimal(0)) for day in days],
            params.horizon_days,
            ForecastModel(params.model),
            params.confidence_level,
        )
    except NotEnoughHistoryError:
        raise InsufficientDataError(
            f"Insufficient historical data for forecast (minimum {MIN_POINTS} days required, {len(days)} available)"
        ) from None
    places = COST_PLACES if metric == "cost" else Decimal(1)
    points = [
        ForecastPoint(
            date=last + timedelta(days=p.step),
            value=p.value.quantize(places),
            lower_bound=p.lower_bound.quantize(places),
            upper_bound=p.upper_bound.quantize(places),
        )
        for p in predictions
    ]
    total = ForecastPoint(
        date=points[-1].date,
        value=sum((p.value for p in points), Decimal(0)),
        lower_bound=sum((p.lower_bound for p in points), Decimal(0)),
        upper_bound=sum((p.upper_bound for p in points), Decimal(0)),
    )
    return Forecast(
        organization_id=params.organization_id,
        metric=metric,
        model=params.model,
        horizon_days=params.horizon_days,
        confidence_level=params.confidence_level,
        currency=currency,
        history=HistorySpan(start=start, end=last, days=len(days)),
        predictions=points,
        total=total,
    )
