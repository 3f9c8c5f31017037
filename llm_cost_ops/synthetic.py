"""Labeled synthetic cost series: seasonal, growing, noisy, with injected anomalies.

Used by the detection-quality benchmark (``benchmarks/detection_quality.py``) and the tests.
Hourly windows: a daily shape (quiet nights, busy afternoons), quieter weekends, slow organic
growth and multiplicative noise; then, after a clean warm-up, anomalies of four kinds at
random hours, each labeled with the windows it covers:

* ``spike``: one window at 4-8x (a runaway agent loop caught in one hour);
* ``level_shift``: 3x for 12 windows (a rollout to a dearer model);
* ``slow_leak``: an extra cost growing each window, to 2x after 24 windows (a leaked key);
* ``drop``: 0.2x for 6 windows (traffic lost).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal

HOURS_PER_WEEK = 168


@dataclass(frozen=True)
class Injected:
    kind: str
    start: int
    end: int
    """Exclusive."""


@dataclass(frozen=True)
class LabeledSeries:
    values: list[Decimal]
    anomalies: list[Injected]
    warmup: int


def normal_level(hour: int, base: float, growth_per_day: float) -> float:
    """The series without noise or anomalies at hour ``hour`` (hour 0 = Monday 00:00 UTC)."""
    day_hour, weekday = hour % 24, (hour // 24) % 7
    daily = 0.35 + 0.65 * math.exp(-(((day_hour - 14) / 5.0) ** 2))
    weekly = 0.55 if weekday >= 5 else 1.0
    return float(base * daily * weekly * (1 + growth_per_day) ** (hour / 24))


def generate(
    seed: int,
    weeks: int = 6,
    warmup_weeks: int = 2,
    base: float = 40.0,
    noise: float = 0.08,
    growth_per_day: float = 0.003,
    anomalies: int = 8,
) -> LabeledSeries:
    rng = random.Random(seed)
    hours = weeks * HOURS_PER_WEEK
    warmup = warmup_weeks * HOURS_PER_WEEK
    levels = [normal_level(h, base, growth_per_day) * math.exp(rng.gauss(0, noise)) for h in range(hours)]
    injected: list[Injected] = []
    kinds = ["spike", "level_shift", "slow_leak", "drop"]
    lengths = {"spike": 1, "level_shift": 12, "slow_leak": 24, "drop": 6}
    free_from = warmup
    slots = anomalies
    span = (hours - warmup) // max(1, slots)
    for n in range(slots):
        kind = kinds[n % len(kinds)]
        start = rng.randrange(free_from, free_from + max(1, span - lengths[kind] - 24))
        end = start + lengths[kind]
        for h in range(start, end):
            if kind == "spike":
                levels[h] *= rng.uniform(4, 8)
            elif kind == "level_shift":
                levels[h] *= 3
            elif kind == "slow_leak":
                levels[h] += normal_level(start, base, growth_per_day) * (h - start + 1) / lengths[kind]
            else:
                levels[h] *= 0.2
        injected.append(Injected(kind, start, end))
        free_from = warmup + (n + 1) * span
    values = [Decimal(f"{level:.6f}") for level in levels]
    return LabeledSeries(values, injected, warmup)
