"""``cost-ops anomalies backtest``: the worker's detector on a CSV of history, to tune it.

Input: a CSV with the header ``timestamp,value``, one window per row, oldest first (rows are
taken as consecutive windows; a missing window is a row with value 0). Output: one JSON object
per row, ``{"timestamp": as given, "value": ..., "score": ... or null, "anomaly": ...}``. A bad
row is reported on stderr with its line number and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from llm_cost_ops.cli.console import err, out
from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.settings import Settings
from streams.detectors import DetectorConfig, Method, SeriesState, finite, observe

HEADER = ["timestamp", "value"]


def backtest(source: TextIO, config: DetectorConfig) -> int:
    """Print a JSON line per good row; returns the number of bad rows."""
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != HEADER:
        raise InvalidInputError(f"the first line must be the header {','.join(HEADER)}, not {header}")
    state, index, bad = SeriesState(), 0, 0
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        reason = _problem(row)
        if reason:
            err(f"line {line}: {reason}")
            bad += 1
            continue
        timestamp, value = row[0], Decimal(row[1].strip())
        seen = observe(state, index, value, config)
        index += 1
        assert seen is not None  # indices only grow
        score = finite(seen.score)
        # The value exactly as a JSON number (no float rounding of money).
        fields = json.dumps({"timestamp": timestamp})[:-1]
        score_text = "null" if score is None else json.dumps(round(score, 4))
        out(f'{fields}, "value": {value:f}, "score": {score_text}, "anomaly": {json.dumps(seen.anomalous)}}}')
    return bad


def _problem(row: list[str]) -> str | None:
    if len(row) != 2:
        return f"expected 2 fields (timestamp,value), got {len(row)}"
    if not row[0].strip():
        return "timestamp: must not be empty"
    try:
        value = Decimal(row[1].strip())
    except InvalidOperation:
        return f"value: not a number ({row[1]!r})"
    if not value.is_finite() or value < 0:
        return f"value: must be a finite number >= 0 ({row[1]!r})"
    return None


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    seasons = None if args.seasons is None else tuple(int(s) for s in args.seasons.split(",") if s.strip())
    config = DetectorConfig.from_settings(
        settings.anomaly,
        method=None if args.method is None else Method(args.method),
        threshold=args.threshold,
        min_history=args.min_history,
        seasons=seasons,
        persistence=args.persistence,
    )
    if str(args.input) == "-":
        bad = backtest(sys.stdin, config)
    else:
        path = Path(args.input)
        if not path.is_file():
            raise InvalidInputError(f"--input: no such file: {path}")
        with path.open(newline="", encoding="utf-8") as source:
            bad = backtest(source, config)
    if bad:
        err(f"{bad} bad row(s) skipped")
    return 1 if bad else 0


def add_anomaly_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    anomalies = sub.add_parser("anomalies", help="anomaly detection: backtest the detector on your history")
    commands = anomalies.add_subparsers(dest="anomalies_command", required=True, metavar="ACTION")
    run = commands.add_parser("backtest", help="score a CSV (timestamp,value) with the worker's detector")
    run.add_argument("--input", required=True, help="CSV file with header timestamp,value (- for stdin)")
    run.add_argument("--method", choices=[m.value for m in Method], help="default: ANOMALY__METHOD (robust)")
    run.add_argument("--threshold", type=float, help="score beyond which a row is anomalous")
    run.add_argument("--min-history", type=int, help="rows before any score (default 192: a week and a day of hours)")
    run.add_argument("--seasons", help="season lengths in rows, e.g. 24,168 (empty: none)")
    run.add_argument("--persistence", type=int, help="consecutive anomalous rows before an alert")
    run.set_defaults(func=cmd_backtest)
