"""Custom pricing through the running pipeline: rules added through the API reach the worker
on the control topic within seconds; tier volume survives a worker restart; unpriced events
are listed with COST_001 and a reprice replaces their cost exactly once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from llm_cost_ops.cli.main import main

from processes import ApiPipeline

pytestmark = pytest.mark.integration


Pipeline = ApiPipeline


@pytest.fixture
def worker(pipeline: Pipeline) -> Iterator[None]:
    with pipeline.worker("worker"):
        yield


def send(pipeline: Pipeline, records: list[dict[str, Any]]) -> None:
    response = pipeline.api.post("/api/v1/usage/batch", json={"records": records})
    assert response.status_code == 202, response.text


def record(org: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"evt-{uuid.uuid4().hex[:12]}",
        "timestamp": "2025-01-15T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4",
        "organization_id": org,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
    } | fields


def cost(pipeline: Pipeline, event_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = pipeline.api.get(f"/api/v1/costs/{event_id}")
        if response.status_code == 200:
            found: dict[str, Any] = response.json()
            return found
        time.sleep(0.3)
    pytest.fail(f"event {event_id} never reached ClickHouse; logs in {pipeline.root}")


def add_rule(pipeline: Pipeline, body: dict[str, Any]) -> dict[str, Any]:
    response = pipeline.api.post("/api/v1/pricing", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def priced_by(pipeline: Pipeline, org: str, rule_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """Send events until one is priced by ``rule_id``: the rule has reached the worker."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = record(org, model="gpt-4o-mini")
        send(pipeline, [probe])
        found = cost(pipeline, probe["id"])
        if found["price_source"] == rule_id:
            return found
        time.sleep(0.5)
    pytest.fail(f"rule {rule_id} never reached the worker; logs in {pipeline.root}")


def test_custom_prices_reach_the_running_worker(pipeline: Pipeline, worker: None) -> None:
    org = f"org-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    probe_rule = add_rule(
        pipeline,
        {"provider": "openai", "model": "gpt-4o-mini", "organization_id": org,
         "pricing_structure": {"type": "per_token", "input_price_per_million": "1", "output_price_per_million": "1"}},
    )  # fmt: skip
    priced_by(pipeline, org, probe_rule["id"])
    assert time.monotonic() - started < 30  # "within seconds", with the sink's latency included

    seeds = add_rule(
        pipeline,
        {"provider": "openai", "model": "gpt-4", "organization_id": org, "effective_date": "2025-01-01",
         "pricing_structure": {"type": "per_token", "input_price_per_million": 10.0, "output_price_per_million": 30.0,
                               "cached_input_discount": 0.5}},
    )  # fmt: skip
    per_request = add_rule(
        pipeline,
        {"provider": "openai", "model": "gpt-4", "organization_id": org, "project_id": "batch-jobs",
         "pricing_structure": {"type": "per_request", "price_per_request": "0.01", "included_tokens": 1000,
                               "overage_price_per_million": "5"}},
    )  # fmt: skip
    priced_by(pipeline, org, probe_rule["id"])  # the later snapshot has arrived too: it is published in order
    plain, cached, batch = record(org), record(org, cached_tokens=400), record(org, project_id="batch-jobs")
    send(pipeline, [plain, cached, batch])

    found = cost(pipeline, plain["id"])
    assert (found["price_source"], Decimal(found["total_cost"])) == (seeds["id"], Decimal("0.0250000000"))
    assert found["price_rates"]["input_price_per_million"] == "10.0"
    assert Decimal(cost(pipeline, cached["id"])["total_cost"]) == Decimal("0.0230000000")
    found = cost(pipeline, batch["id"])
    assert (found["price_source"], Decimal(found["request_cost"])) == (per_request["id"], Decimal("0.0125000000"))


def test_tier_volume_survives_a_worker_restart(pipeline: Pipeline) -> None:
    org = f"org-{uuid.uuid4().hex[:6]}"
    tiered = add_rule(
        pipeline,
        {"provider": "openai", "model": "gpt-4", "organization_id": org,
         "pricing_structure": {"type": "tiered", "tiers": [
             {"threshold": 0, "input_price_per_million": "10", "output_price_per_million": "30"},
             {"threshold": 2000, "input_price_per_million": "8", "output_price_per_million": "24"}]}},
    )  # fmt: skip
    probe = add_rule(
        pipeline,
        {"provider": "openai", "model": "gpt-4o-mini", "organization_id": org,
         "pricing_structure": {"type": "per_token", "input_price_per_million": "1", "output_price_per_million": "1"}},
    )  # fmt: skip
    first, second = record(org), record(org)
    with pipeline.worker("worker-before"):
        priced_by(pipeline, org, probe["id"])
        send(pipeline, [first])
        assert cost(pipeline, first["id"])["tier_volume"] == 0
    with pipeline.worker("worker-after"):  # a new process: the volume comes from the changelog
        send(pipeline, [second])
        found = cost(pipeline, second["id"])
    assert found["price_source"] == tiered["id"]
    assert found["tier_volume"] == 1500
    # 1500..2000 at $10 (500 prompt tokens), 2000..2500 at $8; output 2500..3000 at $24.
    assert Decimal(found["input_cost"]) == Decimal("0.0090000000")
    assert Decimal(found["output_cost"]) == Decimal("0.0120000000")


def test_unpriced_events_are_listed_then_repriced_exactly_once(
    pipeline: Pipeline, worker: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTOPS_API_URL", pipeline.env["COSTOPS_API_URL"])
    monkeypatch.setenv("COSTOPS_API_KEY", pipeline.env["COSTOPS_ADMIN_KEY"])
    org = f"org-{uuid.uuid4().hex[:6]}"
    events = [record(org, model="in-house-llm", timestamp=f"2025-03-0{day}T12:00:00Z") for day in (1, 2, 3)]
    send(pipeline, events)
    for event in events:
        found = cost(pipeline, event["id"])
        assert found["pricing_status"] == "unpriced"
        assert found["error"]["code"] == "COST_001"
    missing = pipeline.api.get("/api/v1/pricing/missing", params={"organization_id": org}).json()
    assert [(m["model"], m["events"], m["error"]["code"]) for m in missing["data"]] == [("in-house-llm", 3, "COST_001")]
    assert missing["data"][0]["error"]["message"] == "Pricing table not found for openai/in-house-llm on 2025-03-03"
    assert main(["pricing", "missing", "--organization", org]) == 0
    assert "in-house-llm" in capsys.readouterr().out

    assert main(["pricing", "add", "--provider", "openai", "--model", "in-house-llm", "--organization", org,
                 "--input-price", "2", "--output-price", "4"]) == 0  # fmt: skip
    assert main(["reprice", "--from", "2025-03-01", "--to", "2025-03-02", "--organization", org]) == 0
    assert "repriced 2 events" in capsys.readouterr().out
    summary = pipeline.api.get("/api/v1/costs/summary", params={"organization_id": org}).json()
    assert summary["total_requests"] == 3  # replaced, not added
    assert summary["unpriced_requests"] == 1  # 2025-03-03 was outside the range
    assert Decimal(summary["total_cost"]) == 2 * Decimal("0.0040000000")
    assert main(["reprice", "--from", "2025-03-01", "--to", "2025-03-03", "--organization", org]) == 0
    summary = pipeline.api.get("/api/v1/costs/summary", params={"organization_id": org}).json()
    assert (summary["total_requests"], summary["unpriced_requests"]) == (3, 0)
    assert Decimal(summary["total_cost"]) == 3 * Decimal("0.0040000000")
    assert pipeline.api.get("/api/v1/pricing/missing", params={"organization_id": org}).json()["total"] == 0
