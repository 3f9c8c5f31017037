"""Ingestion never answers 202 for an event Kafka does not have: with the broker gone, the API
answers 503 with Retry-After, and says so on /ready."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_cost_ops.broker import EmbeddedBroker, free_port

from processes import ADMIN_KEY, api_client, cost_ops_processes, wait_ok


def test_broker_outage_gives_503_with_retry_after(tmp_path: Path, usage_record: Callable[..., dict[str, Any]]) -> None:
    broker = EmbeddedBroker()
    broker.start()
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA__IDEMPOTENT_PRODUCER": "false",
        "COSTOPS_DATA_DIR": str(tmp_path / "data"),
        "API_PORT": str(port),
        "COSTOPS_ADMIN_KEY": ADMIN_KEY,
    }
    try:
        with (
            cost_ops_processes({"api": ["api", "--role", "api"]}, env, tmp_path),
            api_client(f"http://127.0.0.1:{port}", 60) as client,
        ):
            wait_ok(client, "/ready", tmp_path, timeout_s=60)
            assert client.post("/api/v1/usage", json=usage_record()).status_code == 202

            broker.stop()
            answer = client.post("/api/v1/usage", json=usage_record())
            assert answer.status_code == 503
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["error"]["code"] == "BROKER_UNAVAILABLE"
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["kafka"] is False
    finally:
        broker.stop()
