"""The README's run command: ``cost-ops up`` brings the whole pipeline up on the embedded
defaults; ``cost-ops ingest`` and ``cost-ops summary`` find it on their own; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_cost_ops.broker import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "usage.json"


def cost_ops(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_ops.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_up_ingest_summary_and_clean_stop(tmp_path: Path) -> None:
    env = {**os.environ, "API_PORT": str(free_port()), "KAFKA__REBALANCE_TIMEOUT_S": "2"}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "COSTOPS_DATA_DIR", "COSTOPS_API_URL", *AUTH_VARS):
        env.pop(name, None)
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "llm_cost_ops.cli.main", "up"], cwd=tmp_path, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    started: dict[str, Any] = {}
    try:
        runtime = tmp_path / "data" / "runtime.json"
        deadline = time.monotonic() + 150
        while not runtime.exists():
            if up.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"cost-ops up did not start:\n{(tmp_path / 'up.log').read_text()}")
            time.sleep(0.3)
        started = json.loads(runtime.read_text())
        assert started["pid"] == up.pid
        assert _pipeline_processes(tmp_path / "data", started["kafka_bootstrap_servers"])  # the probe sees them

        bad = tmp_path / "bad.jsonl"
        bad.write_text(
            json.dumps({"provider": "openai", "model": "gpt-4", "organization_id": "o", "prompt_tokens": 1,
                        "completion_tokens": 1, "timestamp": "2025-01-20T00:00:00Z"}) + "\n"
            + '{"provider": "openai", "model": "gpt-4"\n'
            + json.dumps({"provider": "nope", "model": "x", "organization_id": "o", "prompt_tokens": 1,
                          "completion_tokens": 1}) + "\n"
        )  # fmt: skip
        dry = cost_ops(tmp_path, env, "ingest", "--file", str(bad), "--dry-run")
        assert dry.returncode == 1
        assert "line 2: not valid JSON" in dry.stderr and "line 3: provider: must be one of" in dry.stderr
        assert "3 records read, 1 valid, 2 invalid" in dry.stdout

        ingested = cost_ops(tmp_path, env, "ingest", "--file", str(EXAMPLE))
        assert ingested.returncode == 0, ingested.stderr
        assert "2 records read, 2 ingested, 0 rejected" in ingested.stdout

        # Secure by default: the first start made an admin key, which the CLI found on its own.
        key_file = tmp_path / "data" / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        secret = key_file.read_text().strip()
        assert secret.startswith("sk_live_") and secret in (tmp_path / "up.log").read_text()  # printed once
        base = f"http://127.0.0.1:{env['API_PORT']}"
        refused = httpx.get(f"{base}/api/v1/costs/summary")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "AUTH_001"
        assert httpx.get(f"{base}/api/v1/costs/summary", headers={"X-API-Key": secret}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200

        deadline = time.monotonic() + 90
        while True:
            summary = cost_ops(tmp_path, env, "summary", "--start-date", "2025-01-01", "--end-date", "2025-01-31")
            assert summary.returncode == 0, summary.stderr
            if "Total Requests: 2" in summary.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # gpt-4: 1000 x $30/M + 500 x $60/M = $0.06; gpt-4-turbo-2024-04-09: 1500 x $10/M + 800 x $30/M = $0.039
        assert "Total Requests: 2" in summary.stdout
        assert "Total Cost: $0.099000" in summary.stdout
        assert "gpt-4: $0.060000" in summary.stdout and "gpt-4-turbo: $0.039000" in summary.stdout

        rows = cost_ops(
            tmp_path, env, "query", "--start-date", "2025-01-15", "--end-date", "2025-01-15", "--output", "json"
        )
        assert sorted(r["total_cost"] for r in json.loads(rows.stdout)) == ["0.0390000000", "0.0600000000"]
    finally:
        # Twice, as an impatient user does: the second one must not abandon the children.
        up.send_signal(signal.SIGINT)
        time.sleep(0.5)
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            for pid in _pipeline_processes(tmp_path / "data", started.get("kafka_bootstrap_servers", "?")):
                os.kill(pid, signal.SIGKILL)  # not left running through the rest of the tests
            raise
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    assert not (tmp_path / "data" / "runtime.json").exists()
    assert "stopped." in (tmp_path / "up.log").read_text()
    assert _pipeline_processes(tmp_path / "data", started["kafka_bootstrap_servers"]) == []


def _pipeline_processes(data_dir: Path, broker: str) -> list[int]:
    """Pids of this pipeline's children: the API and worker (by their COSTOPS_DATA_DIR) and
    the broker (by its listener address)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"COSTOPS_DATA_DIR={data_dir}".encode() in environ or f"tcp://{broker}".encode() in cmdline:
            found.append(int(proc.name))
    return found


AUTH_VARS = ("COSTOPS_ADMIN_KEY", "COSTOPS_API_KEY")


def test_commands_without_a_pipeline_fail_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "COSTOPS_API_URL": f"http://127.0.0.1:{free_port()}"}
    result = cost_ops(tmp_path, env, "summary")
    assert result.returncode == 1
    assert "no LLM-CostOps API answers" in result.stderr and "cost-ops up" in result.stderr
    assert "Traceback" not in result.stderr
