"""The ``detect`` agent: closed windows (``cost-windows``) -> anomaly alerts (``alerts``).

Each window of the scored size (``ANOMALY__WINDOW_S``) goes through its series' detector
(streams/detectors.py); the series' state lives in the changelog-backed ``anomaly-state``
table, so a restarted or rebalanced worker continues where the last one stopped. A window
seen again (a replay, or a window closed twice after a crash) changes nothing. An alert is
produced, and acknowledged by the broker, before the state that records it is written: a
crash in between raises the same alert (same id) again, never none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import faust

from llm_cost_ops.metrics import PipelineMetrics
from schemas.columns import iso_millis
from streams.alerting import send_alert
from streams.detectors import DetectorConfig, Observation, SeriesState, finite, observe
from streams.table_writes import during
from streams.topics import PipelineTopics

logger = logging.getLogger(__name__)

QUANTUM = Decimal("1e-10")


@dataclass(frozen=True)
class DetectDeps:
    config: DetectorConfig
    window_s: int
    states: Any
    """The ``anomaly-state`` Faust table: series -> SeriesState.dump()."""
    metrics: PipelineMetrics


def anomaly_alert(window: dict[str, Any], seen: Observation, config: DetectorConfig, now: datetime) -> dict[str, Any]:
    """The alert record of an anomalous window (produced to ``alerts``, stored in ``alerts``)."""
    assert seen.expected is not None and seen.direction is not None
    expected = seen.expected.quantize(QUANTUM)
    actual = Decimal(window["cost"])
    member = window.get("project_id") or window.get("model")
    scope = window["organization_id"] + (f" {window['dimension']} {member}" if member else "")
    change = "above" if actual >= expected else "below"
    return {
        "alert_id": f"cost.anomaly|{window['window_id']}",
        "type": "cost.anomaly",
        "organization_id": window["organization_id"],
        "dimension": window["dimension"],
        "project_id": window.get("project_id"),
        "model": window.get("model"),
        "currency": window["currency"],
        "window_start": window["window_start"],
        "window_end": window["window_end"],
        "size_seconds": window["size_seconds"],
        "actual_cost": str(actual),
        "expected_cost": str(expected),
        "impact": str(actual - expected),
        "score": finite(seen.score),
        "method": config.method.value,
        "threshold": config.limit,
        "severity": seen.severity,
        "direction": seen.direction.value,
        "windows": seen.streak,
        "message": (
            f"{scope}: {window['currency']} {actual:.2f} in the window from {window['window_start']}, "
            f"{change} the expected {expected:.2f} ({seen.direction.value}, score {finite(seen.score) or 0:.1f})"
        ),
        "created_at": iso_millis(now),
    }


def register_detect_agent(app: faust.App, topics: PipelineTopics, deps: DetectDeps) -> Any:
    @app.agent(topics.windows, name="detect")
    async def detect(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(500, within=0.2):
            await _detect_take(events, topics, deps)
            yield None

    return detect


async def _detect_take(events: Sequence[Any], topics: PipelineTopics, deps: DetectDeps) -> None:
    """Score a take of closed windows in order; alerts go out (acknowledged) before the states
    that record them are written, each state once, as if during its series' last window."""
    states: dict[str, tuple[SeriesState, Any]] = {}
    sends = []
    now = datetime.now(UTC)
    for event in events:
        window = _scored_window(event.value, deps.window_s)
        if window is None:
            continue
        series = window.series
        if series not in states:
            stored = deps.states.get(series)
            states[series] = (SeriesState() if not stored else SeriesState.load(stored), event)
        state = states[series][0]
        states[series] = (state, event)
        seen = observe(state, window.index, window.cost, deps.config)
        if seen is None:
            continue  # seen before: a replay, or a window closed twice
        deps.metrics.windows_scored.inc()
        if seen.alert:
            sends.append(
                await send_alert(topics.alerts, anomaly_alert(window.record, seen, deps.config, now), deps.metrics)
            )
    await asyncio.gather(*sends)
    for series, (state, event) in states.items():
        with during(event):
            deps.states[series] = state.dump()


@dataclass(frozen=True)
class ScoredWindow:
    record: dict[str, Any]
    series: str
    index: int
    cost: Decimal


def _scored_window(value: bytes, window_s: int) -> ScoredWindow | None:
    """The closed window if it is of the scored size (others are for ClickHouse only)."""
    try:
        record: dict[str, Any] = json.loads(value)
        if int(record["size_seconds"]) != window_s:
            return None
        return ScoredWindow(
            record, str(record["series"]), int(record["window_start_s"]) // window_s, Decimal(record["cost"])
        )
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        logger.error("unusable closed window skipped: %s", exc)
        return None
