"""Anomaly detectors on a series of closed windows (cost per window), pure logic.

One ``SeriesState`` per series (an organization, a project or a model, at one window size)
holds the recent history; ``observe`` scores the next window, updates the state and says
whether to alert. The same code runs in the worker and in ``cost-ops anomalies backtest``.

Methods:

* ``robust`` (default): the baseline of a window is the median of the windows at the same
  phase of the season (the same hour on earlier days, or of earlier weeks once a week is
  known), scaled by the recent level: the median of the recent windows' ratios to their own
  seasonal baselines (so steady growth is followed). The score is the window's ratio to its
  baseline, minus the recent median ratio, over 1.4826 x the ratios' median absolute deviation
  (a robust z-score: one spike cannot inflate it, as it inflates a standard deviation).
* ``zscore`` (the seeds'): (value - mean) / standard deviation of the recent windows.
* ``iqr`` (the seeds'): how many interquartile ranges the value lies beyond Q1 or Q3
  (Tukey's fences at ``threshold`` = 1.5).

For every method: no score before ``min_history`` windows; a flagged window does not teach
the baseline; spikes and drops are separate streaks; an alert needs ``persistence``
consecutive flagged windows of one direction and a dollar impact (actual - expected) of at
least ``min_impact``, and is raised once per streak; severity comes from that impact. A
streak that lasts ``adapt_after`` windows becomes the new normal (a deliberate change of
level stops alerting and is learned).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from statistics import median
from typing import Any

from llm_cost_ops.settings import AnomalySettings

MAD_SCALE = Decimal("1.4826")
"""Makes the median absolute deviation estimate a standard deviation for normal noise."""
RELATIVE_FLOOR = Decimal("0.02")
"""Smallest spread of the ratios: a flat series is not infinitely sensitive."""


class Method(StrEnum):
    ROBUST = "robust"
    ZSCORE = "zscore"
    IQR = "iqr"


DEFAULT_THRESHOLDS = {Method.ROBUST: 4.0, Method.ZSCORE: 3.0, Method.IQR: 1.5}


class Direction(StrEnum):
    SPIKE = "spike"
    DROP = "drop"


@dataclass(frozen=True)
class DetectorConfig:
    method: Method = Method.ROBUST
    threshold: float | None = None
    """Score beyond which a window is anomalous; ``None``: the method's default."""
    min_history: int = 192
    """Windows before any score: a week and a day of hours, so the weekly season is known
    before the first weekend is judged."""
    history: int = 336
    """Windows kept (two weeks of hours: enough for a weekly season)."""
    seasons: tuple[int, ...] = (24, 168)
    """Season lengths in windows (a day and a week of hourly windows); the longest one the
    history covers twice is used. Empty: no seasonality."""
    level_windows: int = 24
    """Recent windows whose median ratio to baseline sets the level (follows growth)."""
    persistence: int = 1
    adapt_after: int = 24
    min_impact: Decimal = Decimal("1")
    severity_steps: tuple[Decimal, Decimal, Decimal] = (Decimal("10"), Decimal("100"), Decimal("1000"))
    """Impacts (absolute, in the series' currency) from which an alert is medium, high, critical."""

    @classmethod
    def from_settings(cls, settings: AnomalySettings, **overrides: Any) -> DetectorConfig:
        """The settings' detector; ``overrides`` (not ``None``) replace single fields."""
        config = cls(
            method=Method(settings.method),
            threshold=settings.threshold,
            min_history=settings.min_history,
            history=settings.history,
            seasons=settings.seasons,
            persistence=settings.persistence,
            adapt_after=settings.adapt_after,
            min_impact=settings.min_impact_usd,
            severity_steps=settings.severity_usd,
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.method]


@dataclass
class SeriesState:
    """A series' recent history; JSON-serializable through ``dump``/``load``."""

    last_index: int | None = None
    values: list[Decimal | None] = field(default_factory=list)
    """One per window up to ``last_index``, oldest first; ``None`` = flagged (not taught)."""
    ratios: list[Decimal | None] = field(default_factory=list)
    """Each window's ratio to its seasonal baseline when it was seen (``robust``), aligned
    with ``values``; ``None`` where there was none or the window was flagged."""
    streak: int = 0
    direction: Direction | None = None
    alerted: bool = False
    held: list[tuple[Decimal, Decimal | None, Decimal | None]] = field(default_factory=list)
    """Value, ratio and value / expected of each window of the current streak (taught if the
    streak lasts)."""

    def dump(self) -> dict[str, Any]:
        return {
            "last_index": self.last_index,
            "values": [None if v is None else str(v) for v in self.values],
            "ratios": [None if r is None else str(r) for r in self.ratios],
            "streak": self.streak,
            "direction": None if self.direction is None else self.direction.value,
            "alerted": self.alerted,
            "held": [[None if x is None else str(x) for x in entry] for entry in self.held],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SeriesState:
        return cls(
            last_index=data["last_index"],
            values=[None if v is None else Decimal(v) for v in data["values"]],
            ratios=[None if r is None else Decimal(r) for r in data["ratios"]],
            streak=int(data["streak"]),
            direction=None if data["direction"] is None else Direction(data["direction"]),
            alerted=bool(data["alerted"]),
            held=[(Decimal(v), _decimal(r), _decimal(k)) for v, r, k in data["held"]],
        )


@dataclass(frozen=True)
class Observation:
    """What one window's scoring found."""

    index: int
    value: Decimal
    expected: Decimal | None
    score: float | None
    """``None`` before ``min_history`` windows."""
    anomalous: bool
    direction: Direction | None
    alert: bool
    """The first window at which the streak meets ``persistence`` and ``min_impact``."""
    severity: str | None
    streak: int

    @property
    def impact(self) -> Decimal | None:
        return None if self.expected is None else self.value - self.expected


@dataclass(frozen=True)
class Baseline:
    expected: Decimal
    score: float


def observe(state: SeriesState, index: int, value: Decimal, config: DetectorConfig) -> Observation | None:
    """Score window ``index`` (a running number: window start // window size) of the series.

    Windows skipped since the last one count as zero (no traffic, no cost). A window at or
    before the last one seen is a replay and changes nothing (``None``)."""
    if state.last_index is not None and index <= state.last_index:
        return None
    if state.last_index is not None:
        gap = min(index - state.last_index - 1, config.history)
        state.values.extend([Decimal(0)] * gap)
        state.ratios.extend([None] * gap)
    state.last_index = index
    known = [v for v in state.values if v is not None]
    season = _season(len(state.values), config.seasons)
    phase = _phase_median(state.values, len(state.values), season, config)
    baseline = _baseline(state, phase, value, config) if len(known) >= config.min_history else None
    anomalous = baseline is not None and abs(baseline.score) > config.limit
    direction = None
    if baseline is not None and anomalous:
        direction = Direction.SPIKE if baseline.score > 0 else Direction.DROP
    if anomalous and direction == state.direction:
        state.streak += 1
    elif anomalous:
        state.direction, state.streak, state.alerted, state.held = direction, 1, False, []
    else:
        state.direction, state.streak, state.alerted, state.held = None, 0, False, []
    alert, severity = False, None
    if anomalous and baseline is not None:
        impact = abs(value - baseline.expected)
        severity = _severity(impact, config)
        if not state.alerted and state.streak >= config.persistence and impact >= config.min_impact:
            alert = state.alerted = True
    ratio = value / phase if phase is not None and phase > 0 else None
    streak = state.streak
    if anomalous:
        state.values.append(None)
        state.ratios.append(None)
        scale = value / baseline.expected if baseline is not None and baseline.expected > 0 else None
        state.held.append((value, ratio, scale))
    else:
        state.values.append(value)
        state.ratios.append(ratio)
    if anomalous and state.streak >= config.adapt_after:
        _adapt(state)
    del state.values[: max(0, len(state.values) - config.history)]
    del state.ratios[: max(0, len(state.ratios) - config.history)]
    return Observation(
        index=index,
        value=value,
        expected=None if baseline is None else baseline.expected,
        score=None if baseline is None else baseline.score,
        anomalous=anomalous,
        direction=direction,
        alert=alert,
        severity=severity if alert or anomalous else None,
        streak=streak,
    )


def _adapt(state: SeriesState) -> None:
    """The streak lasted: its level is the new normal. The history before it is rescaled by
    the streak's median ratio to what was expected (the seasonal shape stays, the level moves),
    and the streak's windows are taught."""
    scales = [k for _, _, k in state.held if k is not None]
    factor = median(scales) if scales else Decimal(1)
    first = len(state.values) - len(state.held)
    for j in range(first):
        v = state.values[j]
        if v is not None:
            state.values[j] = v * factor
    for offset, (value, ratio, _) in enumerate(state.held):
        state.values[first + offset] = value
        state.ratios[first + offset] = None if ratio is None or factor == 0 else ratio / factor
    state.direction, state.streak, state.alerted, state.held = None, 0, False, []


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _severity(impact: Decimal, config: DetectorConfig) -> str:
    medium, high, critical = config.severity_steps
    if impact >= critical:
        return "critical"
    if impact >= high:
        return "high"
    return "medium" if impact >= medium else "low"


def _baseline(state: SeriesState, phase: Decimal | None, value: Decimal, config: DetectorConfig) -> Baseline:
    recent = [v for v in state.values if v is not None]
    if config.method is Method.ZSCORE:
        return _zscore(recent, value)
    if config.method is Method.IQR:
        return _iqr(recent, value)
    return _robust(state, phase, recent, value, config)


def _zscore(recent: list[Decimal], value: Decimal) -> Baseline:
    mean = sum(recent, Decimal(0)) / len(recent)
    std = (sum(((v - mean) ** 2 for v in recent), Decimal(0)) / len(recent)).sqrt()
    spread = max(std, abs(mean) * RELATIVE_FLOOR, Decimal("1e-9"))
    return Baseline(expected=mean, score=float((value - mean) / spread))


def _iqr(recent: list[Decimal], value: Decimal) -> Baseline:
    q1, q3 = _quantile(recent, Decimal("0.25")), _quantile(recent, Decimal("0.75"))
    middle = median(recent)
    spread = max(q3 - q1, abs(middle) * RELATIVE_FLOOR, Decimal("1e-9"))
    score = Decimal(0)
    if value > q3:
        score = (value - q3) / spread
    elif value < q1:
        score = (value - q1) / spread
    return Baseline(expected=middle, score=float(score))


def _quantile(values: list[Decimal], q: Decimal) -> Decimal:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _robust(
    state: SeriesState, phase: Decimal | None, recent: list[Decimal], value: Decimal, config: DetectorConfig
) -> Baseline:
    ratios = [r for r in state.ratios if r is not None]
    if phase is None or phase <= 0 or len(ratios) < config.min_history // 2:
        middle = median(recent)  # no usable seasonal baseline yet: plain median/MAD
        mad = median([abs(v - middle) for v in recent]) * MAD_SCALE
        spread = max(mad, abs(middle) * RELATIVE_FLOOR, Decimal("1e-9"))
        return Baseline(expected=middle, score=float((value - middle) / spread))
    level = median(ratios[-config.level_windows :])
    center = median(ratios)
    mad = median([abs(r - center) for r in ratios]) * MAD_SCALE
    spread = max(mad, RELATIVE_FLOOR)
    return Baseline(expected=phase * level, score=float((value / phase - level) / spread))


def _season(length: int, seasons: tuple[int, ...]) -> int | None:
    """The longest season the history covers (with a day's margin, one full cycle is enough:
    the same hour of last week is a better guess for a Saturday than any weekday)."""
    usable = [s for s in seasons if s > 1 and length >= s + max(1, s // 7)]
    return max(usable) if usable else None


def _phase_median(
    values: Sequence[Decimal | None], at: int, season: int | None, config: DetectorConfig
) -> Decimal | None:
    """Median of the known windows at the phase of ``at`` in earlier seasons (all earlier
    windows of the last ``level_windows`` when there is no season)."""
    if season is None:
        window = values[max(0, at - config.level_windows) : at]
    else:  # the same phase in up to 4 earlier seasons
        window = [values[k] for k in range(at - season, max(-1, at - 5 * season), -season)]
    known = [v for v in window if v is not None]
    return median(known) if known else None


def finite(score: float | None) -> float | None:
    """A score fit for JSON (no infinities)."""
    if score is None or math.isfinite(score):
        return score
    return math.copysign(1e12, score)


def score_series(values: Sequence[Decimal], config: DetectorConfig) -> list[Observation]:
    """Every window of a whole series, oldest first, through a fresh detector."""
    state = SeriesState()
    seen = [observe(state, index, value, config) for index, value in enumerate(values)]
    return [o for o in seen if o is not None]
