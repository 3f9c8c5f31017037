"""Alerts delivered to webhooks by the running API: signed, retried after a 500, logged.

The receiver is a real HTTP server on this machine; the alert is produced to the pipeline's
``alerts`` topic as the worker's detector produces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from receivers import Receiver

from processes import ApiPipeline, wait_for

pytestmark = pytest.mark.integration


def alert(org: str, start: str = "2025-03-17T14:00:00Z") -> dict[str, Any]:
    return {
        "alert_id": f'cost.anomaly|[3600,"organization","{org}","","USD"]@{start}',
        "type": "cost.anomaly",
        "organization_id": org,
        "dimension": "organization",
        "project_id": None,
        "model": None,
        "currency": "USD",
        "window_start": start,
        "window_end": "2025-03-17T15:00:00Z",
        "size_seconds": 3600,
        "actual_cost": "288.3301820000",
        "expected_cost": "51.2215610000",
        "impact": "237.1086210000",
        "score": 24.1,
        "method": "robust",
        "threshold": 4.0,
        "severity": "high",
        "direction": "spike",
        "windows": 1,
        "message": f"{org}: USD 288.33 in the window from {start}, above the expected 51.22",
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def produce(pipeline: ApiPipeline, *alerts: dict[str, Any]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"])
        await producer.start()
        try:
            for item in alerts:
                key = item["organization_id"].encode()
                await producer.send_and_wait(pipeline.env["KAFKA__ALERTS_TOPIC"], json.dumps(item).encode(), key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_a_signed_alert_is_retried_after_a_500_and_logged(pipeline: ApiPipeline, tmp_path: Path) -> None:
    api = pipeline.api
    with Receiver([500]) as receiver, Receiver([]) as other:
        created = api.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["cost.anomaly"], "secret": "s3cret-s3cret-s3cret"},
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"] == "s3cret-s3cret-s3cret"
        assert "secret" not in api.get(f"/api/v1/webhooks/{hook['id']}").json()
        # Not for anomalies, or not for this organization: nothing arrives there.
        for body in (
            {"url": other.url, "events": ["budget.threshold"]},
            {"url": other.url, "events": ["cost.anomaly"], "organization_id": "org-else"},
        ):
            assert api.post("/api/v1/webhooks", json=body).status_code == 201
        sent = alert("org-hooked")
        produce(pipeline, sent)
        wait_for(lambda: len(receiver.requests) >= 2, "the delivery and its retry")
        time.sleep(1)

    assert other.requests == []
    assert len(receiver.requests) == 2  # one 500, one success: nothing more
    (first_headers, _), (headers, body) = receiver.requests
    assert headers["X-CostOps-Delivery"] == first_headers["X-CostOps-Delivery"]  # the receiver can dedupe
    assert headers["X-CostOps-Event"] == "cost.anomaly"
    expected = hmac.new(
        b"s3cret-s3cret-s3cret", headers["X-CostOps-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-CostOps-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "cost.anomaly" and payload["id"] == headers["X-CostOps-Delivery"]
    assert payload["data"] == sent
    log = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert [(d["attempt"], d["status_code"], d["success"]) for d in log] == [(2, 200, True), (1, 500, False)]
    assert log[1]["error"] == "HTTP 500"


def test_webhook_input_is_validated_and_unknown_ids_are_404(pipeline: ApiPipeline) -> None:
    bad = pipeline.api.post("/api/v1/webhooks", json={"url": "ftp://x", "events": ["cost.spike"], "secret": "short"})
    assert bad.status_code == 422
    fields = bad.json()["error"]["field_errors"]
    assert fields == {
        "url": "must be an http:// or https:// URL",
        "events[0]": "must be one of: 'cost.anomaly' or 'budget.threshold'",
        "secret": "must be at least 16 characters",
    }
    assert pipeline.api.get("/api/v1/webhooks/wh_nope/deliveries").status_code == 404
    assert pipeline.api.delete("/api/v1/webhooks/wh_nope").status_code == 404
    generated = pipeline.api.post("/api/v1/webhooks", json={"url": "https://example.com/x", "events": ["cost.anomaly"]})
    assert generated.json()["secret"].startswith("whsec_")
    hook_id = generated.json()["id"]
    assert pipeline.api.delete(f"/api/v1/webhooks/{hook_id}").status_code == 200
    assert hook_id not in [h["id"] for h in pipeline.api.get("/api/v1/webhooks").json()["data"]]
