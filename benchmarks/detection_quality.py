"""Detection quality of each method on labeled synthetic series (``llm_cost_ops.synthetic``).

Scored per injected anomaly, as an operator sees it: an anomaly is *found* if an alert falls
within its windows or the two after them; every other alert is a *false alarm*. Precision =
alerts on anomalies / all alerts; recall = anomalies found / anomalies injected; latency =
windows from an anomaly's start to its first alert.

    python -m benchmarks.detection_quality [--series 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from llm_cost_ops.cli.console import out
from llm_cost_ops.synthetic import LabeledSeries, generate
from streams.detectors import DetectorConfig, Method, SeriesState, observe

TOLERANCE = 2
"""Windows after an anomaly's end in which an alert still counts as finding it."""


@dataclass
class Score:
    alerts: int = 0
    true_alerts: int = 0
    found: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)
    clean_alerts: int = 0
    """False alarms on the same series without anomalies, from its first window (six normal
    seasonal weeks)."""

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return sum(self.found.values()) / sum(self.injected.values())

    def report(self) -> dict[str, object]:
        return {
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "alerts": self.alerts,
            "false_alarms": self.alerts - self.true_alerts,
            "false_alarms_on_clean_series": self.clean_alerts,
            "median_latency_windows": statistics.median(self.latencies) if self.latencies else None,
            "recall_by_kind": {kind: round(self.found[kind] / n, 3) for kind, n in sorted(self.injected.items())},
        }


def alerts_of(series: LabeledSeries, config: DetectorConfig) -> list[int]:
    state = SeriesState()
    alerts = []
    for index, value in enumerate(series.values):
        seen = observe(state, index, value, config)
        if seen is not None and seen.alert:
            alerts.append(index)
    return alerts


def evaluate(config: DetectorConfig, series_count: int, seed: int = 1) -> Score:
    score = Score()
    for n in range(series_count):
        anomalous = generate(seed * 10_000 + n)
        clean = generate(seed * 10_000 + n, anomalies=0)
        for anomaly in anomalous.anomalies:
            score.injected[anomaly.kind] += 1
        alerts = alerts_of(anomalous, config)
        score.alerts += len(alerts)
        for anomaly in anomalous.anomalies:
            hits = [a for a in alerts if anomaly.start <= a < anomaly.end + TOLERANCE]
            if hits:
                score.found[anomaly.kind] += 1
                score.latencies.append(hits[0] - anomaly.start)
        score.true_alerts += sum(
            1 for a in alerts if any(x.start <= a < x.end + TOLERANCE for x in anomalous.anomalies)
        )
        score.clean_alerts += len(alerts_of(clean, config))
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50, help="labeled series per method (6 weeks of hours each)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = {}
    for method in Method:
        config = DetectorConfig(method=method, persistence=1)
        results[method.value] = evaluate(config, args.series).report()
        out(f"{method.value:7} {json.dumps(results[method.value])}")
    if args.json:
        args.json.write_text(json.dumps({"series": args.series, "methods": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
