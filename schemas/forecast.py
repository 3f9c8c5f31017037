"""Request and response of ``POST /api/v1/forecast/cost`` and ``/forecast/usage`` (the seeds'
``forecast.generate``)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.errors import validated
from schemas.query import Money


class ForecastRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str | None = Field(default=None, max_length=128)
    horizon_days: int = Field(default=30, ge=1, le=365)
    model: Literal["linear", "moving_average", "exponential_smoothing"] = "linear"
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1)
    history_days: int = Field(default=90, ge=7, le=730)
    """Days of history before the last day with usage that the model learns from."""
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    """For cost forecasts: the currency of the costs forecast."""

    @model_validator(mode="before")
    @classmethod
    def _forecast_model_alias(cls, data: Any) -> Any:
        # The seeds' Rust SDK sends "forecast_model"; the Python SDK "model".
        if isinstance(data, dict) and "forecast_model" in data and "model" not in data:
            data = {**data, "model": data["forecast_model"]}
            del data["forecast_model"]
        return data

    @classmethod
    def parse(cls, data: object) -> ForecastRequest:
        """Validate, raising :class:`InvalidInputError` with one reason per bad field."""
        return validated(cls, data, "forecast request")


class ForecastPoint(BaseModel):
    date: date
    value: Money
    lower_bound: Money
    upper_bound: Money


class HistorySpan(BaseModel):
    start: date
    end: date
    days: int


class Forecast(BaseModel):
    organization_id: str | None
    metric: Literal["cost", "tokens"]
    model: str
    horizon_days: int
    confidence_level: float
    currency: str | None
    """Of a cost forecast; null for tokens."""
    history: HistorySpan
    predictions: list[ForecastPoint]
    total: ForecastPoint
    """The whole horizon: the sum of the predictions, and of their bounds (a conservative
    interval). Its ``date`` is the horizon's last day."""
