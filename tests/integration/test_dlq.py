"""Dead letters through the running pipeline: listed with their reasons (``GET /api/v1/dlq``,
``cost-ops dlq list``), replayed after a fix (``cost-ops dlq replay``), counted once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from llm_cost_ops.cli.main import main
from llm_cost_ops.settings import KafkaSettings, Settings
from llm_cost_ops.wire import build_codec
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent

from processes import ApiPipeline

pytestmark = pytest.mark.integration


Pipeline = ApiPipeline


def settings_of(pipeline: Pipeline) -> Settings:
    env = pipeline.env
    kafka = KafkaSettings(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], usage_topic=env["KAFKA__USAGE_TOPIC"],
        dlq_topic=env["KAFKA__DLQ_TOPIC"], partitions=2, idempotent_producer=False,
    )  # fmt: skip
    return Settings(kafka=kafka)


def publish(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    """Straight to the usage topic, as another producer would (the API would refuse these)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(settings.kafka.usage_topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def dead_letters(pipeline: Pipeline, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = pipeline.api.get("/api/v1/dlq", params={"limit": 1000}).json()["data"]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    pytest.fail(f"{len(found)} of {count} dead letters; logs in {pipeline.root}")


def test_dead_letters_are_listed_and_replayed_after_a_fix(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTOPS_API_URL", pipeline.env["COSTOPS_API_URL"])
    monkeypatch.setenv("COSTOPS_API_KEY", pipeline.env["COSTOPS_ADMIN_KEY"])
    org = f"org-{uuid.uuid4().hex[:6]}"
    settings = settings_of(pipeline)
    codec = build_codec(settings)
    # Valid Avro from a service of a provider the workers do not accept yet.
    acme = UsageEvent.parse(
        {"provider": "acme", "model": "acme-1", "organization_id": org, "prompt_tokens": 10, "completion_tokens": 5},
        providers=allowed_providers(("acme",)),
    )
    with pipeline.worker("worker"):
        publish(settings, [(org.encode(), b"not avro at all"), (org.encode(), codec.encode_usage(acme))])
        letters = dead_letters(pipeline, 2)
    by_kind = {letter["kind"]: letter for letter in letters}
    assert set(by_kind) == {"DECODE_ERROR", "VALIDATION_ERROR"}
    assert "magic byte" in by_kind["DECODE_ERROR"]["reason"]
    assert by_kind["VALIDATION_ERROR"]["field_errors"].startswith("provider: must be one of")
    assert by_kind["VALIDATION_ERROR"]["key"] == org
    assert by_kind["VALIDATION_ERROR"]["source_topic"] == settings.kafka.usage_topic

    first = pipeline.api.get("/api/v1/dlq", params={"limit": 1}).json()
    assert len(first["data"]) == 1 and first["has_more"]
    second = pipeline.api.get("/api/v1/dlq", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert {first["data"][0]["id"], second["data"][0]["id"]} == {letter["id"] for letter in letters}
    assert pipeline.api.get("/api/v1/dlq", params={"kind": "DECODE_ERROR"}).json()["data"] == [by_kind["DECODE_ERROR"]]
    assert main(["dlq", "list"]) == 0
    assert "provider: must be one of" in capsys.readouterr().out

    # The fix: the workers accept the provider. Replayed, the event is stored, once, however often.
    with pipeline.worker("worker-fixed", CUSTOM_PROVIDERS="acme"):
        accepted = by_kind["VALIDATION_ERROR"]["id"]
        assert main(["dlq", "replay", accepted]) == 0
        assert main(["dlq", "replay", accepted]) == 0
        assert "replayed 1 dead letter(s)" in capsys.readouterr().out
        found = stored(pipeline, acme.id)
        assert (found["provider"], found["pricing_status"]) == ("acme", "unpriced")  # no price yet: COST_001
        # Still undecodable: replayed, it dead-letters again, saying where it came from.
        replay = pipeline.api.post("/api/v1/dlq/replay", json={"all": True, "kind": "DECODE_ERROR"}).json()
        assert replay["ids"] == [by_kind["DECODE_ERROR"]["id"]]
        again = [letter for letter in dead_letters(pipeline, 3) if letter["replayed_from"]]
        assert [letter["replayed_from"] for letter in again] == [by_kind["DECODE_ERROR"]["id"]]
    summary = pipeline.api.get("/api/v1/costs/summary", params={"organization_id": org}).json()
    assert summary["total_requests"] == 1

    bad = pipeline.api.post("/api/v1/dlq/replay", json={"ids": ["0:999999"]})
    assert bad.status_code == 422
    assert "not in the DLQ" in bad.json()["error"]["field_errors"]["ids"]
    assert pipeline.api.post("/api/v1/dlq/replay", json={}).status_code == 422


def stored(pipeline: Pipeline, event_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = pipeline.api.get(f"/api/v1/costs/{event_id}")
        if response.status_code == 200:
            found: dict[str, Any] = response.json()
            return found
        time.sleep(0.3)
    pytest.fail(f"event {event_id} never reached ClickHouse; logs in {pipeline.root}")
