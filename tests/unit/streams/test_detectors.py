"""The anomaly detectors as pure logic: scores, baselines, streaks, alerts, state."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from benchmarks.detection_quality import evaluate
from streams.detectors import DetectorConfig, Direction, Method, SeriesState, observe

FLAT = DetectorConfig(min_history=10, seasons=(), min_impact=Decimal("1"))


def feed(state: SeriesState, values: list[str], config: DetectorConfig, start: int = 0) -> list:
    return [observe(state, start + i, Decimal(v), config) for i, v in enumerate(values)]


def noisy(n: int, level: int = 100) -> list[str]:
    """A level with a deterministic wobble of +-3 %."""
    return [str(level + (i * 3 % 7) - 3) for i in range(n)]


def test_no_score_before_min_history() -> None:
    seen = feed(SeriesState(), noisy(10), FLAT)
    assert all(o.score is None and not o.anomalous and not o.alert for o in seen)
    assert observe(SeriesState(**{}), 0, Decimal(5), FLAT).expected is None  # type: ignore[union-attr]


@pytest.mark.parametrize("method", list(Method))
def test_a_spike_alerts_once_and_does_not_teach_the_baseline(method: Method) -> None:
    config = DetectorConfig(method=method, min_history=10, seasons=())
    state = SeriesState()
    feed(state, noisy(30), config)
    spike = observe(state, 30, Decimal(1000), config)
    assert spike is not None and spike.anomalous and spike.alert
    assert spike.direction is Direction.SPIKE and spike.score is not None and spike.score > config.limit
    assert spike.expected is not None and Decimal(95) <= spike.expected <= Decimal(105)
    assert state.values[-1] is None  # flagged: not part of the baseline
    after = observe(state, 31, Decimal(100), config)
    assert after is not None and not after.anomalous and not after.alert


def test_drops_and_spikes_are_separate_streaks_with_one_alert_each() -> None:
    state = SeriesState()
    feed(state, noisy(30), FLAT)
    shift = feed(state, ["300"] * 5, FLAT, start=30)
    assert [o.alert for o in shift] == [True, False, False, False, False]
    assert all(o.anomalous and o.direction is Direction.SPIKE for o in shift)
    assert [o.streak for o in shift] == [1, 2, 3, 4, 5]
    drop = feed(state, ["10", "10"], FLAT, start=35)
    assert [(o.direction, o.alert) for o in drop] == [(Direction.DROP, True), (Direction.DROP, False)]


def test_persistence_delays_the_alert_to_the_nth_window() -> None:
    config = DetectorConfig(min_history=10, seasons=(), persistence=3)
    state = SeriesState()
    feed(state, noisy(30), config)
    shift = feed(state, ["300"] * 4, config, start=30)
    assert [o.alert for o in shift] == [False, False, True, False]
    single = SeriesState()
    feed(single, noisy(30), config)
    assert not any(o.alert for o in feed(single, ["900", "100", "100"], config, start=30))


def test_severity_comes_from_the_dollar_impact_not_the_score() -> None:
    config = DetectorConfig(min_history=10, seasons=(), severity_steps=(Decimal(20), Decimal(100), Decimal(1000)))
    cheap = SeriesState()
    feed(cheap, ["0.01", "0.0102", "0.0098"] * 10, config)
    tiny = observe(cheap, 30, Decimal("0.5"), config)  # 50x: a huge score, 49 cents
    assert tiny is not None and tiny.anomalous and not tiny.alert
    for value, severity in [("115", "low"), ("130", "medium"), ("400", "high"), ("5000", "critical")]:
        state = SeriesState()
        feed(state, noisy(30), config)
        seen = observe(state, 30, Decimal(value), config)
        assert seen is not None and seen.alert and seen.severity == severity, value


def test_a_lasting_change_becomes_the_new_normal() -> None:
    config = DetectorConfig(min_history=10, seasons=(), adapt_after=5)
    state = SeriesState()
    feed(state, noisy(30), config)
    shifted = feed(state, ["300"] * 40, config, start=30)
    assert sum(o.alert for o in shifted) == 1
    assert [o.anomalous for o in shifted[:6]] == [True] * 5 + [False]  # learned after 5
    assert not any(o.anomalous for o in shifted[5:])


def test_replays_change_nothing_and_gaps_count_as_zero() -> None:
    state = SeriesState()
    feed(state, noisy(30), FLAT)
    before = json.dumps(state.dump())
    assert observe(state, 29, Decimal(10_000), FLAT) is None
    assert json.dumps(state.dump()) == before
    seen = observe(state, 33, Decimal(100), FLAT)  # windows 30..32 had no traffic
    assert seen is not None and state.values[-4:-1] == [Decimal(0)] * 3


def test_state_survives_a_round_trip_through_json() -> None:
    """A restarted worker continues exactly where the old one stopped."""
    config = DetectorConfig(min_history=24, seasons=(24,))
    values = [str(50 + 40 * ((i % 24) in range(9, 18)) + i % 3) for i in range(120)] + ["400", "60"]
    whole = SeriesState()
    straight = feed(whole, values, config)
    first = SeriesState()
    feed(first, values[:100], config)
    restored = SeriesState.load(json.loads(json.dumps(first.dump())))
    resumed = feed(restored, values[100:], config, start=100)
    assert resumed == straight[100:]
    assert resumed[-2] is not None and resumed[-2].alert


def test_zscore_and_iqr_follow_their_textbook_formulas() -> None:
    history = ["10", "12", "14", "16", "18", "10", "12", "14", "16", "18"]
    z = DetectorConfig(method=Method.ZSCORE, min_history=10, seasons=(), min_impact=Decimal(0))
    state = SeriesState()
    feed(state, history, z)
    seen = observe(state, 10, Decimal(20), z)  # mean 14, population std sqrt(8)
    assert seen is not None and seen.score == pytest.approx(6 / 8**0.5)
    q = DetectorConfig(method=Method.IQR, min_history=10, seasons=(), min_impact=Decimal(0))
    state = SeriesState()
    feed(state, history, q)
    seen = observe(state, 10, Decimal(26), q)  # Q1 12, Q3 16: (26 - 16) / 4
    assert seen is not None and seen.score == pytest.approx(2.5) and seen.anomalous


def test_robust_detection_quality_on_labeled_seasonal_series() -> None:
    """Four labeled series (six weeks of hours: daily and weekly season, growth, noise, eight
    anomalies each): the default detector finds almost all of them with few false alarms."""
    score = evaluate(DetectorConfig(), series_count=4)
    assert score.recall >= 0.9 and score.precision >= 0.9, score.report()
    assert score.found["spike"] == score.injected["spike"]
    assert score.found["level_shift"] == score.injected["level_shift"]
