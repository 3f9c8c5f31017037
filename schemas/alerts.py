"""Query parameters and response models of alerts and anomalies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.query import EARLIEST_DATE, LATEST_DATE, Money, UtcDatetime, instant

AlertType = Literal["cost.anomaly", "budget.threshold"]
Severity = Literal["low", "medium", "high", "critical"]


class AlertParams(BaseModel):
    """``GET /api/v1/alerts``: newest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str | None = Field(default=None, max_length=128)
    type: AlertType | None = None
    severity: Severity | None = None
    start_date: date | datetime | None = None
    """Alerts on windows starting at or after this (a date: its whole day)."""
    end_date: date | datetime | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=100, ge=1)

    @field_validator("start_date", "end_date")
    @classmethod
    def _in_range(cls, value: date | datetime | None) -> date | datetime | None:
        if (
            value is not None
            and not EARLIEST_DATE <= (value.date() if isinstance(value, datetime) else value) <= LATEST_DATE
        ):
            raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
        return value

    @property
    def start(self) -> datetime | None:
        return None if self.start_date is None else instant(self.start_date, False)

    @property
    def end(self) -> datetime | None:
        return None if self.end_date is None else instant(self.end_date, True)


class Alert(BaseModel):
    alert_id: str
    type: str
    organization_id: str
    dimension: str
    project_id: str | None
    model: str | None
    currency: str
    window_start: UtcDatetime
    window_end: UtcDatetime
    actual_cost: Money
    expected_cost: Money | None
    impact: Money | None
    score: float | None
    """Anomalies: the detector's score; budgets: the percent of the budget spent."""
    method: str
    threshold: float | None
    """Anomalies: the detector's threshold; budgets: the threshold (percent) reached."""
    severity: str
    direction: str
    windows: int
    """Consecutive anomalous windows when the alert was raised."""
    message: str
    created_at: UtcDatetime


class AlertPage(BaseModel):
    data: list[Alert]
    page: int
    per_page: int
    total: int
    has_more: bool


class AnomalyParams(BaseModel):
    """``GET /api/v1/forecast/anomalies``: the seeds' ``detect_anomalies`` on daily costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str | None = Field(default=None, max_length=128)
    method: Literal["robust", "zscore", "iqr"] = "robust"
    threshold: float | None = Field(default=None, gt=0, le=1000)
    start_date: date
    end_date: date
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, value: date, info: object) -> date:
        start = getattr(info, "data", {}).get("start_date")
        if start is not None and value < start:
            raise ValueError("must not be before start_date")
        if start is not None and (value - start).days > 366:
            raise ValueError("at most 366 days after start_date")
        return value


class Anomaly(BaseModel):
    date: date
    actual_cost: Money
    expected_cost: Money
    score: float
    method: str
    severity: str
    direction: str


class AnomalyReport(BaseModel):
    organization_id: str | None
    method: str
    threshold: float
    currency: str
    data: list[Anomaly]
