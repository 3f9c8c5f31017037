"""Budgets through the running pipeline: spend counted by the worker (killed and restarted
mid-stream), each threshold alerting once, a webhook receiving the signed alerts after a 500,
and a spent hard budget refusing its scope's events at ingestion."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from receivers import Receiver

from llm_cost_ops.broker import EmbeddedBroker, free_port

from processes import Process, api_client, pipeline_env, wait_for, wait_ok

pytestmark = pytest.mark.integration

SESSION_S = 10.0
# Every event's timestamp, and the instant every period is read at (a test running over
# midnight still reads the day its events fell on).
AT = (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
MODEL = "budget-model"  # $1 per million input tokens: an event's cost is its tokens / 1e6


def event(org: str, cost: str, project: str, user: str) -> dict[str, Any]:
    return {
        "id": f"{org}-{uuid.uuid4().hex[:12]}",
        "timestamp": AT.isoformat(),
        "provider": "openai",
        "model": MODEL,
        "organization_id": org,
        "project_id": project,
        "user_id": user,
        "prompt_tokens": int(Decimal(cost) * 1_000_000),
        "completion_tokens": 0,
    }


def budgets(client: httpx.Client) -> dict[str, dict[str, Any]]:
    listed = client.get("/api/v1/budgets", params={"organization_id": "org-b", "at": AT.isoformat()})
    assert listed.status_code == 200, listed.text
    return {b["name"]: b for b in listed.json()["data"]}


def spend(client: httpx.Client, name: str) -> Decimal:
    return Decimal(budgets(client)[name]["spend"])


def send(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/usage/batch", json={"records": records})
    assert response.status_code == 202, response.text


@pytest.fixture(scope="module")
def run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("budgets")
    api_port = free_port()
    env = pipeline_env(
        broker.bootstrap_servers, root, uuid.uuid4().hex[:8],
        KAFKA__PARTITIONS="2", API_PORT=str(api_port), WORKER__WEB_PORT=str(free_port()),
    )  # fmt: skip
    api = Process("api", ["api", "--role", "all"], env, root)
    worker = Process("worker", ["worker"], env, root)
    results: dict[str, Any] = {}
    receiver = Receiver([500])
    try:
        api.start()
        with receiver, api_client(f"http://127.0.0.1:{api_port}", 60) as client:
            wait_ok(client, "/ready", root)
            hook = {"url": receiver.url, "events": ["budget.threshold"], "organization_id": "org-b"}
            created = client.post("/api/v1/webhooks", json=hook)
            assert created.status_code == 201
            results["secret"] = created.json()["secret"]
            structure = {"type": "per_token", "input_price_per_million": "1", "output_price_per_million": "1"}
            assert client.post("/api/v1/pricing", json={"provider": "openai", "model": MODEL,
                                                        "pricing_structure": structure}).status_code == 201  # fmt: skip
            for body in [
                {"name": "org", "organization_id": "org-b", "amount": "10"},
                {"name": "p1", "organization_id": "org-b", "project_id": "p1", "period": "daily", "amount": "2",
                 "thresholds": [100], "enforcement": "hard"},
                {"name": "u1", "organization_id": "org-b", "user_id": "u1", "amount": "5", "thresholds": [50]},
                {"name": "model", "organization_id": "org-b", "model": MODEL, "amount": "100"},
            ]:  # fmt: skip
                response = client.post("/api/v1/budgets", json=body)
                assert response.status_code == 201, response.text
            results["invalid"] = client.post(
                "/api/v1/budgets", json={"name": "x", "organization_id": "org-b", "amount": "0", "period": "weekly"}
            )
            worker.start()
            worker_ready = f"http://127.0.0.1:{env['WORKER__WEB_PORT']}/ready"
            wait_ok(client, worker_ready, root)

            # Before the kill: org-b $3.8 (p1 and u1 $0.8); another organization's $1 is not org-b's.
            send(client, [event("org-b", "0.3", "p2", "u2") for _ in range(10)])
            send(client, [event("org-b", "0.4", "p1", "u1") for _ in range(2)] + [event("org-c", "1", "p1", "u1")])
            wait_for(lambda: spend(client, "org") == Decimal("3.8"), "org-b's spend before the kill")
            results["before"] = budgets(client)
            worker.kill()
            time.sleep(SESSION_S + 3)  # Tansu: see docs/delivery.md
            worker.start()
            wait_ok(client, worker_ready, root)

            # After: p1 reaches its hard $2 (org 50 %), u1 its 50 %, then org 80 % and 100 %.
            send(client, [event("org-b", "0.3", "p1", "u1") for _ in range(4)])
            send(client, [event("org-b", "0.4", "p2", "u1") for _ in range(10)])
            send(client, [event("org-b", "2.000001", "p2", "u3")])
            wait_for(lambda: budgets(client)["p1"]["exceeded"], "the hard budget spent")
            results["refused"] = client.post("/api/v1/usage", json=event("org-b", "0.000001", "p1", "u1"))
            results["allowed"] = client.post("/api/v1/usage", json=event("org-b", "0.000001", "p2", "u1"))
            batch = [event("org-b", "0.000001", "p1", "u9"), event("org-b", "0.000001", "p3", "u9")]
            results["batch"] = client.post("/api/v1/usage/batch", json={"records": batch})
            wait_for(lambda: spend(client, "org") == Decimal("11.000003"), "org-b's whole spend")
            results["after"] = budgets(client)
            wait_for(lambda: len(budget_alerts(client)) >= 5, "five budget alerts stored")
            time.sleep(2)  # a duplicate would arrive by now
            results["alerts"] = budget_alerts(client)
            wait_for(lambda: len({h["X-CostOps-Delivery"] for h, _ in receiver.requests}) >= 5, "five deliveries")
            results["webhook"] = list(receiver.requests)
            results["metrics"] = client.get("/metrics").text
            deleted = client.delete(f"/api/v1/budgets/{results['after']['model']['id']}")
            results["deleted"] = (deleted.status_code, client.get(f"/api/v1/budgets/{deleted.json()['id']}"))
    finally:
        worker.stop()
        api.stop()
    yield results


def budget_alerts(client: httpx.Client) -> list[dict[str, Any]]:
    params = {"organization_id": "org-b", "type": "budget.threshold", "per_page": 100}
    return list(client.get("/api/v1/alerts", params=params).json()["data"])


def test_spend_is_exact_per_scope_across_a_worker_kill(run: dict[str, Any]) -> None:
    before = run["before"]
    assert {name: Decimal(b["spend"]) for name, b in before.items()} == {
        "org": Decimal("3.8"), "p1": Decimal("0.8"), "u1": Decimal("0.8"), "model": Decimal("3.8"),
    }  # fmt: skip
    after = run["after"]
    assert {name: Decimal(b["spend"]) for name, b in after.items()} == {
        "org": Decimal("11.000003"), "p1": Decimal("2.0"), "u1": Decimal("6.000001"),
        "model": Decimal("11.000003"),
    }  # fmt: skip
    org = after["org"]
    assert org["exceeded"] and Decimal(org["remaining"]) == 0 and org["percent_used"] == 110.0
    assert [Decimal(p) for p in org["thresholds_reached"]] == [50, 80, 100]
    assert org["period_start"].startswith(AT.strftime("%Y-%m-01T00:00:00"))
    assert after["p1"]["scope"] == "project" and after["p1"]["period"] == "daily" and after["p1"]["exceeded"]
    assert not after["model"]["exceeded"] and after["model"]["thresholds_reached"] == []


def test_each_threshold_alerts_once(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    names = {b["id"]: name for name, b in run["after"].items()}
    seen = sorted((names[a["alert_id"].split("|")[1]], a["threshold"]) for a in alerts)
    assert seen == [("org", 50.0), ("org", 80.0), ("org", 100.0), ("p1", 100.0), ("u1", 50.0)]
    hard = next(a for a in alerts if names[a["alert_id"].split("|")[1]] == "p1")
    assert (hard["type"], hard["dimension"], hard["project_id"], hard["method"]) == (
        "budget.threshold", "project", "p1", "budget",
    )  # fmt: skip
    assert hard["severity"] == "critical" and Decimal(hard["expected_cost"]) == 2
    assert Decimal(hard["actual_cost"]) >= 2 and Decimal(hard["impact"]) == Decimal(hard["actual_cost"]) - 2


def test_the_webhook_gets_signed_alerts_after_a_retry(run: dict[str, Any]) -> None:
    requests = run["webhook"]
    assert len(requests) == 6  # five alerts; the first attempt got a 500 and was retried
    delivered = {}
    for headers, body in requests:
        signed = f"{headers['X-CostOps-Timestamp']}.".encode() + body
        expected = hmac.new(run["secret"].encode(), signed, hashlib.sha256).hexdigest()
        assert headers["X-CostOps-Signature"] == f"sha256={expected}"
        assert headers["X-CostOps-Event"] == "budget.threshold"
        delivered[headers["X-CostOps-Delivery"]] = json.loads(body)
    assert {p["data"]["alert_id"] for p in delivered.values()} == {a["alert_id"] for a in run["alerts"]}


def test_a_spent_hard_budget_refuses_its_scope_only(run: dict[str, Any]) -> None:
    refused = run["refused"]
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "BUDGET_001" and list(error["field_errors"]) == [f"budget.{run['after']['p1']['id']}"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    assert run["allowed"].status_code == 202
    batch = run["batch"].json()
    assert run["batch"].status_code == 202 and batch["accepted"] == 1
    assert [(r["index"], r["code"]) for r in batch["rejected"]] == [(0, "BUDGET_001")]
    assert "costops_budget_rejected_events_total 2.0" in run["metrics"]


def test_budget_input_errors_and_deletion(run: dict[str, Any]) -> None:
    invalid = run["invalid"]
    assert invalid.status_code == 422
    assert set(invalid.json()["error"]["field_errors"]) == {"amount", "period"}
    status, gone = run["deleted"]
    assert status == 200 and gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
