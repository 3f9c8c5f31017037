"""``cost-ops ingest --file`` at size: a million JSON lines validated in constant memory, and
real ingests (JSON lines, CSV, a JSON array, stdin) where every good record lands once and
every bad one is reported with its line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cost_ops.cli.main import main

from processes import ADMIN_KEY, ApiPipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restore_logging")]  # main() configures logging


def record(org: str, n: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"{org}-{n}",
        "timestamp": "2025-01-15T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "organization_id": org,
        "prompt_tokens": 100 + n % 50,
        "completion_tokens": 20,
        "tags": ["bulk"],
    }
    base.update(overrides)
    return base


def test_million_lines_dry_run_in_constant_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = 1_000_000
    path = tmp_path / "million.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for n in range(lines):
            bad = n % 100_000 == 99_999  # ten bad records, spread through the file
            file.write(json.dumps(record("org-mem", n, prompt_tokens=-1 if bad else 100)) + "\n")
    size = path.stat().st_size
    monkeypatch.delenv("COSTOPS_CONFIG", raising=False)

    tracemalloc.start()
    try:
        code = main(["ingest", "--file", str(path), "--dry-run", "--quiet"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    out, err = capsys.readouterr()
    assert code == 1
    assert f"{lines} records read, {lines - 10} valid, 10 invalid" in out
    assert "rejected line 100000: prompt_tokens: must be greater than or equal to 0" in err
    # Constant memory: the peak is a few MiB (one read buffer, one record), not the ~190 MB file.
    print(f"file {size / 2**20:.1f} MiB, peak traced {peak / 2**20:.2f} MiB", file=sys.stderr)
    assert peak < 16 * 2**20
    assert peak < size / 50


def cost_ops(pipeline: ApiPipeline, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**pipeline.env, "COSTOPS_API_KEY": ADMIN_KEY}
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_ops.cli.main", *args],
        env=env, input=stdin.decode() if stdin is not None else None, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def worker(pipeline: ApiPipeline) -> Iterator[ApiPipeline]:
    with pipeline.worker("ingest-files-worker"):
        yield pipeline


def landed(pipeline: ApiPipeline, org: str) -> int:
    answer = pipeline.api.get("/api/v1/usage/stats", params={"organization_id": org, "start_date": "2025-01-01"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["events"])


def settle(pipeline: ApiPipeline, org: str, expected: int) -> None:
    """Until ``expected`` events of ``org`` are stored, then a little longer: no more arrive."""
    wait_for(lambda: landed(pipeline, org) >= expected, f"{expected} events of {org}", timeout_s=240, every_s=1)
    time.sleep(3)  # a duplicate would be stored by now
    assert landed(pipeline, org) == expected


def test_twenty_thousand_lines_land_exactly_once_and_bad_lines_are_named(worker: ApiPipeline, tmp_path: Path) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "usage.jsonl"
    bad_lines = {}
    with path.open("w", encoding="utf-8") as file:
        for n in range(20_000):
            if n % 2_500 == 7:
                file.write('{"provider": "openai", "model": \n')
                bad_lines[n + 1] = "not valid JSON"
            elif n % 2_500 == 8:
                file.write(json.dumps(record(org, n, provider="nope")) + "\n")
                bad_lines[n + 1] = "provider: must be one of"
            else:
                file.write(json.dumps(record(org, n)) + "\n")
    good = 20_000 - len(bad_lines)

    done = cost_ops(worker, "ingest", "--file", str(path), "--batch-size", "1000")

    assert done.returncode == 1, done.stderr
    assert f"20000 records read, {good} ingested, {len(bad_lines)} rejected" in done.stdout
    for line, reason in bad_lines.items():
        assert f"rejected line {line}: {reason}" in done.stderr
    settle(worker, org, good)

    # Again, the same ids: the pipeline counts each once.
    again = cost_ops(worker, "ingest", "--file", str(path), "--quiet")
    assert f"{good} ingested" in again.stdout
    settle(worker, org, good)


def test_csv_json_array_and_stdin(worker: ApiPipeline, tmp_path: Path) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    csv_file = tmp_path / "usage.csv"
    csv_file.write_text(
        "id,timestamp,provider,model,organization_id,prompt_tokens,completion_tokens,tags,metadata.team\n"
        f"{org}-c1,2025-01-15T10:00:00Z,openai,gpt-4o,{org},10,5,a|b,search\n"
        f"{org}-c2,2025-01-15T10:00:00Z,openai,gpt-4o,{org},ten,5,,\n"
        f"{org}-c3,2025-01-15T10:00:00Z,anthropic,claude-3-5-sonnet-20241022,{org},10,5,,\n"
    )
    done = cost_ops(worker, "ingest", "--file", str(csv_file))
    assert done.returncode == 1
    assert "rejected line 3: prompt_tokens: must be an integer" in done.stderr
    assert "3 records read, 2 ingested, 1 rejected" in done.stdout

    array = tmp_path / "usage.data"  # no telling extension: sniffed from the first byte
    items = [record(org, 1), record(org, 2, completion_tokens=-5), record(org, 3)]
    array.write_text("[\n" + ",\n".join(json.dumps(item, indent=1) for item in items) + "\n]\n")
    done = cost_ops(worker, "ingest", "--file", str(array))
    assert done.returncode == 1
    assert "rejected record 2 (line 14): completion_tokens: must be greater than or equal to 0" in done.stderr
    assert "3 records read, 2 ingested, 1 rejected" in done.stdout

    lines = "".join(json.dumps(record(org, n)) + "\n" for n in range(10, 15)).encode()
    done = cost_ops(worker, "ingest", "--file", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "5 records read, 5 ingested, 0 rejected" in done.stdout

    settle(worker, org, 2 + 2 + 5)
