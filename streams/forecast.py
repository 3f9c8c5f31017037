"""Forecasts of a daily series (cost or tokens) with a prediction interval, pure logic.

Models (the seeds' names):

* ``linear``: least-squares trend line; the interval is the textbook prediction interval of
  a regression, sigma * z * sqrt(1 + 1/n + (x - mean x)^2 / Sxx), widening away from the data;
* ``moving_average``: the mean of the last ``window`` days, flat; the interval is z times the
  spread of its past one-step errors, times sqrt(1 + 1/window);
* ``exponential_smoothing``: Holt's linear method (level and trend), its smoothing weights
  chosen from a grid by the smallest one-step squared error; the interval grows with the
  horizon, sigma * z * sqrt(1 + (h - 1) * alpha^2 * (1 + h * beta)) (Hyndman's approximation).

Arithmetic is Decimal throughout (a forecast is an estimate, but it is reported in money
and compared with budgets in money); ``z`` is the normal quantile of the confidence level.
Lower bounds never go below zero: a cost cannot be negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from statistics import NormalDist

MIN_POINTS = 7
"""Days of history a forecast needs (the seeds' FORECAST_001)."""


class ForecastModel(StrEnum):
    LINEAR = "linear"
    MOVING_AVERAGE = "moving_average"
    EXPONENTIAL_SMOOTHING = "exponential_smoothing"


@dataclass(frozen=True)
class Prediction:
    step: int
    """1 = the first day after the history."""
    value: Decimal
    lower_bound: Decimal
    upper_bound: Decimal


class NotEnoughHistoryError(ValueError):
    pass


def forecast(
    history: Sequence[Decimal], horizon: int, model: ForecastModel, confidence: float, window: int = 7
) -> list[Prediction]:
    """``horizon`` predictions after ``history`` (oldest first, one value per day)."""
    if len(history) < MIN_POINTS:
        raise NotEnoughHistoryError(f"{len(history)} days of history; at least {MIN_POINTS} needed")
    z = Decimal(str(NormalDist().inv_cdf((1 + confidence) / 2)))
    values = [Decimal(v) for v in history]
    if model is ForecastModel.LINEAR:
        return _linear(values, horizon, z)
    if model is ForecastModel.MOVING_AVERAGE:
        return _moving_average(values, horizon, z, min(window, len(values)))
    return _holt(values, horizon, z)


def _bounded(step: int, value: Decimal, half: Decimal) -> Prediction:
    value = max(value, Decimal(0))
    return Prediction(step, value, max(value - half, Decimal(0)), value + half)


def _linear(values: list[Decimal], horizon: int, z: Decimal) -> list[Prediction]:
    n = len(values)
    xs = [Decimal(i) for i in range(n)]
    mean_x = sum(xs, Decimal(0)) / n
    mean_y = sum(values, Decimal(0)) / n
    sxx = sum(((x - mean_x) ** 2 for x in xs), Decimal(0))
    slope = sum(((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)), Decimal(0)) / sxx
    intercept = mean_y - slope * mean_x
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, values, strict=True)]
    sigma = (sum((r * r for r in residuals), Decimal(0)) / max(n - 2, 1)).sqrt()
    out = []
    for step in range(1, horizon + 1):
        x = Decimal(n - 1 + step)
        half = z * sigma * (1 + Decimal(1) / n + (x - mean_x) ** 2 / sxx).sqrt()
        out.append(_bounded(step, intercept + slope * x, half))
    return out


def _moving_average(values: list[Decimal], horizon: int, z: Decimal, window: int) -> list[Prediction]:
    errors = [values[t] - sum(values[t - window : t], Decimal(0)) / window for t in range(window, len(values))]
    sigma = _rms(errors) if errors else _spread(values)
    level = sum(values[-window:], Decimal(0)) / window
    half = z * sigma * (1 + Decimal(1) / window).sqrt()
    return [_bounded(step, level, half) for step in range(1, horizon + 1)]


def _holt(values: list[Decimal], horizon: int, z: Decimal) -> list[Prediction]:
    grid = [Decimal(g) / 10 for g in range(1, 10)]
    best: tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None = None
    for alpha in grid:
        for beta in grid[:5]:
            level, trend, sse = _holt_fit(values, alpha, beta)
            if best is None or sse < best[0]:
                best = (sse, alpha, beta, level, trend)
    assert best is not None
    sse, alpha, beta, level, trend = best
    sigma = (sse / max(len(values) - 2, 1)).sqrt()
    out = []
    for step in range(1, horizon + 1):
        h = Decimal(step)
        half = z * sigma * (1 + (h - 1) * alpha * alpha * (1 + h * beta)).sqrt()
        out.append(_bounded(step, level + h * trend, half))
    return out


def _holt_fit(values: list[Decimal], alpha: Decimal, beta: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Final level and trend, and the sum of squared one-step errors."""
    level, trend = values[0], values[1] - values[0]
    sse = Decimal(0)
    for y in values[1:]:
        predicted = level + trend
        sse += (y - predicted) ** 2
        previous = level
        level = alpha * y + (1 - alpha) * predicted
        trend = beta * (level - previous) + (1 - beta) * trend
    return level, trend, sse


def _rms(errors: list[Decimal]) -> Decimal:
    return (sum((e * e for e in errors), Decimal(0)) / len(errors)).sqrt()


def _spread(values: list[Decimal]) -> Decimal:
    mean = sum(values, Decimal(0)) / len(values)
    return _rms([v - mean for v in values])
