"""Forecast models on known series (streams/forecast.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.forecast import ForecastModel, NotEnoughHistoryError, forecast


def line(n: int, slope: str = "2", intercept: str = "1") -> list[Decimal]:
    return [Decimal(intercept) + Decimal(slope) * i for i in range(n)]


def test_linear_continues_an_exact_line_with_a_zero_width_interval() -> None:
    predictions = forecast(line(10), 3, ForecastModel.LINEAR, 0.95)
    assert [p.value for p in predictions] == [Decimal(21), Decimal(23), Decimal(25)]
    assert all(p.lower_bound == p.value == p.upper_bound for p in predictions)


def test_exponential_smoothing_follows_a_trend() -> None:
    predictions = forecast(line(20), 2, ForecastModel.EXPONENTIAL_SMOOTHING, 0.95)
    assert [round(p.value, 6) for p in predictions] == [Decimal(41), Decimal(43)]


def test_moving_average_is_flat_at_the_last_window_mean() -> None:
    history = [Decimal(v) for v in ["5", "5", "5", "9", "10", "11", "10", "9", "10", "11", "10", "10"]]
    predictions = forecast(history, 5, ForecastModel.MOVING_AVERAGE, 0.9, window=7)
    mean = sum(history[-7:], Decimal(0)) / 7
    assert all(p.value == mean for p in predictions)
    assert len({(p.lower_bound, p.upper_bound) for p in predictions}) == 1
    assert predictions[0].lower_bound < mean < predictions[0].upper_bound


@pytest.mark.parametrize("model", [ForecastModel.LINEAR, ForecastModel.EXPONENTIAL_SMOOTHING])
def test_intervals_widen_with_the_horizon_and_the_confidence(model: ForecastModel) -> None:
    noisy = [Decimal(100 + (i * 37 % 11) - 5 + i) for i in range(30)]
    narrow = forecast(noisy, 20, model, 0.8)
    wide = forecast(noisy, 20, model, 0.99)
    widths = [p.upper_bound - p.lower_bound for p in narrow]
    assert widths[-1] > widths[0] > 0
    assert all(w.upper_bound - w.lower_bound > n.upper_bound - n.lower_bound for w, n in zip(wide, narrow, strict=True))


def test_a_falling_cost_never_goes_below_zero() -> None:
    predictions = forecast(line(10, slope="-3", intercept="30"), 10, ForecastModel.LINEAR, 0.95)
    assert predictions[-1].value == 0 and all(p.lower_bound >= 0 for p in predictions)


def test_seven_days_are_needed() -> None:
    with pytest.raises(NotEnoughHistoryError, match="at least 7"):
        forecast(line(6), 3, ForecastModel.LINEAR, 0.95)
