"""Regression guard: a short `cost-ops bench` must reach a quarter of the documented
throughput (benchmarks/expected.json) and account for every event. A quarter, because CI
machines are noisy: this catches a pipeline that got several times slower, not jitter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXPECTED = json.loads((Path(__file__).parents[2] / "benchmarks" / "expected.json").read_text())


def test_short_benchmark_is_not_grossly_slower_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "llm_cost_ops.cli.main", "bench", "--duration", "15", "--freshness-duration", "5",
         "--backlog", "100000", "--output", str(output)],
        cwd=tmp_path, env={**os.environ, "KAFKA__REBALANCE_TIMEOUT_S": "2"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(output.read_text())
    floor = EXPECTED["end_to_end_events_per_s"] / 4
    assert measured["end_to_end_events_per_s"] >= floor, measured
    accounting = measured["accounting"]
    assert accounting["lost"] == 0 and accounting["extra"] == 0
    assert accounting["events_stored"] == accounting["events_sent"] > 0
    assert measured["freshness"]["probes"] > 0 and measured["freshness"]["p99_ms"] > 0
    assert set(measured["processes"]) >= {"api", "worker", "broker"}


def test_pricing_stage_benchmark_prices_the_whole_backlog(tmp_path: Path) -> None:
    """`cost-ops bench --pricing-stage`: the stage alone with 1 and 2 workers drains its backlog."""
    output = tmp_path / "stage.json"
    result = subprocess.run(
        [sys.executable, "-m", "llm_cost_ops.cli.main", "bench", "--pricing-stage", "50000", "--output", str(output)],
        cwd=tmp_path, env={**os.environ, "KAFKA__REBALANCE_TIMEOUT_S": "2"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(output.read_text())
    assert measured["events"] == 50_000
    assert [run["workers"] for run in measured["runs"]] == [1, 2]
    assert all(run["events_per_s"] > 0 for run in measured["runs"])
    assert set(measured["runs"][1]["processes"]) >= {"worker-1", "worker-2", "broker"}
