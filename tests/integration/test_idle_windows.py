"""Idle ticks through the running pipeline: a partition that falls silent closes its windows
without waiting for traffic, and the ticks are neither priced, stored nor dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from processes import ApiPipeline, wait_for

pytestmark = pytest.mark.integration


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_silent_partition_closes_its_windows(pipeline: ApiPipeline) -> None:
    api = pipeline.api
    now = datetime.now(UTC)
    # A minute that ended at least 30 s ago: only the wall clock can close it (no later event).
    minute = (now - timedelta(seconds=90)).replace(second=0, microsecond=0)
    records = [
        {"id": f"idle-{uuid.uuid4().hex[:10]}", "timestamp": (minute + timedelta(seconds=s)).isoformat(),
         "provider": "openai", "model": "gpt-4o-mini", "organization_id": "org-idle", "project_id": "p",
         "prompt_tokens": 1000, "completion_tokens": 10}
        for s in (1, 20, 40)
    ]  # fmt: skip
    web = pipeline.env["WORKER__WEB_PORT"]
    with pipeline.worker("idle-worker", WINDOW__IDLE_S="2", WINDOW__GRACE_S="1", WINDOW__SIZES_S="60,3600"):
        assert api.post("/api/v1/usage/batch", json={"records": records}).status_code == 202
        wait_for(lambda: api.get("/api/v1/usage/stats").json()["events"] == 3, "the three events stored")
        with httpx.Client(timeout=10) as worker:

            def closed() -> float:
                return metric(worker.get(f"http://127.0.0.1:{web}/metrics").text, "costops_windows_closed_total")

            # Organization, project and model windows of the minute: closed by a tick.
            wait_for(lambda: closed() >= 3, "the minute's windows closed by an idle tick", timeout_s=60)
            text = worker.get(f"http://127.0.0.1:{web}/metrics").text
    closed_by_size = {
        line.split('size_seconds="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("costops_windows_closed_total{")
    }
    assert closed_by_size == {"60": 3.0}  # the hour has not ended: still open
    assert metric(text, "costops_events_dead_lettered_total") == 0  # ticks are not usage
    assert api.get("/api/v1/usage/stats").json()["events"] == 3
    wait_for(lambda: metric(api.get("/metrics").text, 'costops_sink_rows_written_total{table="cost_windows"}') >= 3,
             "the closed windows stored")  # fmt: skip
