"""``cost-ops anomalies backtest`` on CSV files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_cost_ops.cli.main import main


def write(tmp_path: Path, rows: list[str], header: str = "timestamp,value") -> Path:
    path = tmp_path / "history.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_prints_one_json_object_per_row_and_flags_the_spike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"2025-01-01T{i % 24:02d}:{i // 24:02d}:00Z,{100 + i % 5}.25" for i in range(40)]
    rows.append("2025-01-03T00:00:00Z,900.125")
    code = main(
        ["anomalies", "backtest", "--input", str(write(tmp_path, rows)), "--seasons", "", "--min-history", "10"]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 41
    assert set(lines[0]) == {"timestamp", "value", "score", "anomaly"}
    assert lines[0] == {"timestamp": "2025-01-01T00:00:00Z", "value": 100.25, "score": None, "anomaly": False}
    assert [line["anomaly"] for line in lines] == [False] * 40 + [True]
    assert lines[-1]["value"] == 900.125 and lines[-1]["score"] > 4


def test_method_and_threshold_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"t{i},{10 + i % 2}" for i in range(30)] + ["t30,14"]
    path = write(tmp_path, rows)
    main(["anomalies", "backtest", "--input", str(path), "--method", "iqr", "--min-history", "10"])
    strict = json.loads(capsys.readouterr().out.splitlines()[-1])
    main(["anomalies", "backtest", "--input", str(path), "--method", "iqr", "--threshold", "5", "--min-history", "10"])
    lenient = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert strict["anomaly"] and not lenient["anomaly"] and strict["score"] == lenient["score"] == 3.0


def test_bad_rows_are_reported_by_line_and_the_rest_is_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["t0,1", "t1,one", "t2,-4", "t3", "t4,2"]
    code = main(["anomalies", "backtest", "--input", str(write(tmp_path, rows))])
    captured = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["timestamp"] for line in captured.out.splitlines()] == ["t0", "t4"]
    assert "line 3: value: not a number ('one')" in captured.err
    assert "line 4: value: must be a finite number >= 0" in captured.err
    assert "line 5: expected 2 fields" in captured.err


def test_a_wrong_header_or_missing_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anomalies", "backtest", "--input", str(write(tmp_path, ["1,2"], header="time,cost"))]) != 0
    assert "header timestamp,value" in capsys.readouterr().err
    assert main(["anomalies", "backtest", "--input", str(tmp_path / "nope.csv")]) != 0
    assert "no such file" in capsys.readouterr().err
