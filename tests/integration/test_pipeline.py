"""End to end, with real processes: the API+sink process (chDB) and the Faust worker, on the
session's Tansu broker. Events go in through the API (and straight to Kafka for the DLQ
cases); exact Decimal totals come back out of the API, checked against an independent
computation from the genai-prices list prices."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from genai_prices import Usage, calc_price

from llm_cost_ops.broker import EmbeddedBroker, free_port
from llm_cost_ops.settings import KafkaSettings, Settings
from llm_cost_ops.wire import build_codec
from schemas.columns import batch_record, event_record, row_record
from schemas.priced import COST_PLACES
from schemas.usage import UsageEvent

from processes import api_client, cost_ops_processes, pipeline_env, wait_ok

SEED_RECORDS: list[dict[str, Any]] = json.loads((Path(__file__).parents[2] / "examples" / "usage.json").read_text())
MODELS = [
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o1"), ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-haiku-20240307"), ("google", "gemini-1.5-pro"), ("google", "gemini-1.5-flash"),
    ("mistral", "mistral-large-latest"), ("cohere", "command-r-plus"), ("azure", "gpt-4o"),
]  # fmt: skip


@dataclass
class Pipeline:
    api: httpx.Client
    settings: Settings
    logs: Path
    worker_url: str


@pytest.fixture(scope="module")
def pipeline(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("pipeline")
    api_port, worker_port = free_port(), free_port()
    env = pipeline_env(
        broker.bootstrap_servers,
        root,
        tag,
        KAFKA__PARTITIONS="4",
        WORKER__WEB_PORT=str(worker_port),
        API_PORT=str(api_port),
        LOG_LEVEL="info",
    )
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers, usage_topic=f"usage-{tag}",
            priced_topic=f"priced-{tag}", dlq_topic=f"dlq-{tag}", partitions=4, idempotent_producer=False,
        ),
    )  # fmt: skip
    commands = {"api": ["api", "--role", "all"], "worker": ["worker"]}
    with (
        cost_ops_processes(commands, env, root),
        api_client(f"http://127.0.0.1:{api_port}", 30) as client,
    ):
        wait_ok(client, "/ready", root)
        wait_ok(client, f"http://127.0.0.1:{worker_port}/ready", root)
        yield Pipeline(client, settings, root, f"http://127.0.0.1:{worker_port}")


def _wait_for_requests(client: httpx.Client, organization: str, count: int, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        summary = client.get("/api/v1/costs/summary", params={"organization_id": organization}).json()
        if summary["total_requests"] >= count:
            return summary
        time.sleep(0.5)
    pytest.fail(f"only {summary.get('total_requests')} of {count} events of {organization} arrived")


def expected_cost(record: dict[str, Any]) -> Decimal | None:
    """Independent of streams.pricing: genai-prices' own calculator, at the event's time."""
    event = UsageEvent.parse(record)
    try:
        price = calc_price(
            Usage(
                input_tokens=event.prompt_tokens,
                cache_read_tokens=event.cached_tokens,
                output_tokens=event.completion_tokens,
            ),
            event.model.version or event.model.name,
            provider_id=event.provider,
            genai_request_timestamp=event.timestamp,
        )
    except LookupError:
        return None
    return price.total_price.quantize(COST_PLACES)


def test_events_are_priced_exactly_end_to_end(pipeline: Pipeline, usage_record: Callable[..., dict[str, Any]]) -> None:
    org = f"org-e2e-{uuid.uuid4().hex[:6]}"
    seeds = [{**r, "organization_id": org, "id": f"{r['id']}-{org}"} for r in SEED_RECORDS]
    generated = [
        usage_record(
            organization_id=org,
            provider=provider,
            model=model,
            project_id=f"proj-{i % 3}",
            prompt_tokens=500 + 37 * i,
            completion_tokens=100 + 11 * i,
            cached_tokens=(13 * i) % 400,
            reasoning_tokens=(7 * i) % 90 if model == "o1" else 0,
            timestamp=f"2025-0{1 + i % 3}-1{i % 9}T{i % 24:02d}:15:00Z",
        )
        for i, (provider, model) in enumerate(MODELS * 30)
    ]
    unpriced = usage_record(organization_id=org, model="model-nobody-sells")
    records = [*seeds, *generated, unpriced]
    for start in range(0, len(records), 100):
        answer = pipeline.api.post("/api/v1/usage/batch", json={"records": records[start : start + 100]})
        assert answer.status_code == 202, answer.text
        assert answer.json()["rejected"] == []

    summary = _wait_for_requests(pipeline.api, org, len(records))
    expected = {r["id"]: expected_cost(r) for r in records}
    assert expected[unpriced["id"]] is None and all(v is not None for k, v in expected.items() if k != unpriced["id"])
    total = sum((v for v in expected.values() if v is not None), Decimal(0))
    assert summary["total_requests"] == len(records) == 303
    assert summary["unpriced_requests"] == 1
    assert Decimal(summary["total_cost"]) == total
    assert Decimal(summary["avg_cost_per_request"]) == (total / 302).quantize(COST_PLACES)
    by_provider = {b["name"]: Decimal(b["total_cost"]) for b in summary["by_provider"]}
    for provider in {p for p, _ in MODELS}:
        assert by_provider[provider] == sum(
            (expected[r["id"]] or Decimal(0) for r in records if r["provider"] == provider), Decimal(0)
        )

    # The seed examples, priced by hand from the list prices: gpt-4 $30/$60 per M tokens;
    # gpt-4-turbo-2024-04-09 $10/$30, no cache discount listed.
    costs = {r["id"]: r for r in pipeline.api.get(
        "/api/v1/costs", params={"organization_id": org, "model": "gpt-4", "per_page": 10}).json()["data"]}  # fmt: skip
    assert Decimal(costs[seeds[0]["id"]]["total_cost"]) == Decimal("0.0600000000")
    assert costs[seeds[0]["id"]]["timestamp"] == "2025-01-15T10:00:00Z"
    turbo = pipeline.api.get("/api/v1/costs", params={"organization_id": org, "model": "gpt-4-turbo"}).json()
    assert [Decimal(r["total_cost"]) for r in turbo["data"]] == [Decimal("0.0390000000")]

    aggregate = pipeline.api.get(
        "/api/v1/costs/aggregate", params={"organization_id": org, "group_by": "provider,model", "granularity": "day"}
    ).json()
    assert sum(Decimal(g["total_cost"]) for g in aggregate["data"] if g["total_cost"] is not None) == total
    unknown = [g for g in aggregate["data"] if g["model"] == "model-nobody-sells"]
    assert [(g["total_cost"], g["unpriced_requests"]) for g in unknown] == [(None, 1)]  # unknown, not zero
    assert sum(g["request_count"] for g in aggregate["data"]) == len(records)
    page = pipeline.api.get("/api/v1/costs", params={"organization_id": org, "per_page": 100, "page": 4}).json()
    assert (page["total"], len(page["data"]), page["has_more"]) == (303, 3, False)


def test_same_event_id_published_twice_is_counted_once(
    pipeline: Pipeline, usage_record: Callable[..., dict[str, Any]]
) -> None:
    org = f"org-dup-{uuid.uuid4().hex[:6]}"
    records = [usage_record(organization_id=org) for _ in range(20)]
    for record in records:
        assert pipeline.api.post("/api/v1/usage", json=record).status_code == 202
    # The whole lot again, once through the batch endpoint and once one by one.
    assert pipeline.api.post("/api/v1/usage/batch", json={"records": records}).status_code == 202
    for record in records[:5]:
        assert pipeline.api.post("/api/v1/usage", json=record).status_code == 202
    marker = usage_record(organization_id=org)  # published last: once it is in, the copies are too
    assert pipeline.api.post("/api/v1/usage", json=marker).status_code == 202
    summary = _wait_for_requests(pipeline.api, org, 21)
    time.sleep(1.0)  # a duplicate counted twice would show up now
    summary = pipeline.api.get("/api/v1/costs/summary", params={"organization_id": org}).json()
    assert summary["total_requests"] == 21
    total = sum((expected_cost(r) or Decimal(0) for r in [*records, marker]), Decimal(0))
    assert Decimal(summary["total_cost"]) == total


def test_malformed_messages_go_to_the_dlq_and_the_rest_is_priced(
    pipeline: Pipeline, usage_event: Callable[..., UsageEvent]
) -> None:
    org = f"org-dlq-{uuid.uuid4().hex[:6]}"
    settings = pipeline.settings
    codec = build_codec(settings)
    before = [usage_event(organization_id=org) for _ in range(10)]
    after = [usage_event(organization_id=org) for _ in range(10)]
    invalid = codec.serde.encode(
        "usage_event",
        "x",
        {**event_record(before[0]), "id": f"bad-{org}", "prompt_tokens": -5, "total_tokens": 195},
    )
    garbage = b"this is not avro"
    # A batch message with one bad event in the middle: only that event is dead.
    batch_events = [usage_event(organization_id=org) for _ in range(5)]
    columns = batch_record(batch_events)
    columns["completion_tokens"][2] = 10
    columns["total_tokens"][2] = batch_events[2].prompt_tokens + 10
    columns["reasoning_tokens"][2] = 50
    batch = codec.serde.encode("usage_batch", "x", columns)

    async def scenario() -> list[tuple[bytes, dict[str, bytes]]]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        await producer.start()
        topic, key = settings.kafka.usage_topic, org.encode()
        for event in before:
            await producer.send(topic, codec.encode_usage(event), key=key)
        await producer.send(topic, garbage, key=key, headers=[("trace-id", b"t-1")])
        await producer.send(topic, invalid, key=key)
        await producer.send(topic, batch, key=key)
        for event in after:
            await producer.send(topic, codec.encode_usage(event), key=key)
        await producer.flush()
        await producer.stop()
        consumer = AIOKafkaConsumer(
            settings.kafka.dlq_topic, bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest", group_id=f"dlq-{org}",
        )  # fmt: skip
        await consumer.start()
        found: list[tuple[bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found) < 3:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                found += [(m.value, dict(m.headers)) for m in messages if m.key == key]  # type: ignore[misc]
        await consumer.stop()
        return found

    dead = asyncio.run(scenario())
    by_value = dict(dead)
    alone = codec.encode_usage_record(row_record(codec.decode_usage(batch), 2))
    assert set(by_value) == {garbage, invalid, alone}
    assert by_value[alone]["x-dlq-batch-index"] == b"2"
    assert by_value[alone]["x-dlq-field-errors"] == b"reasoning_tokens: must not exceed completion_tokens"
    assert by_value[garbage]["x-dlq-kind"] == b"DECODE_ERROR"
    assert by_value[garbage]["trace-id"] == b"t-1"  # original headers travel with it
    assert by_value[invalid]["x-dlq-kind"] == b"VALIDATION_ERROR"
    assert b"prompt_tokens" in by_value[invalid]["x-dlq-field-errors"]
    assert by_value[invalid]["x-dlq-source-topic"] == settings.kafka.usage_topic.encode()
    summary = _wait_for_requests(pipeline.api, org, 24)
    time.sleep(1.0)
    summary = pipeline.api.get("/api/v1/costs/summary", params={"organization_id": org}).json()
    assert summary["total_requests"] == 24  # 10 before, 10 after, 4 of the batch


def test_422_names_each_bad_field(pipeline: Pipeline, usage_record: Callable[..., dict[str, Any]]) -> None:
    bad = usage_record(provider="acme-ai", prompt_tokens=-1, timestamp="2025-01-15T10:00:00", model={"name": ""})
    del bad["organization_id"]
    answer = pipeline.api.post("/api/v1/usage", json=bad)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["field_errors"]) == {"provider", "prompt_tokens", "timestamp", "model.name", "organization_id"}
    assert error["field_errors"]["organization_id"] == "is required"
    assert "openai" in error["field_errors"]["provider"]

    mixed = pipeline.api.post(
        "/api/v1/usage/batch", json={"records": [usage_record(), usage_record(completion_tokens="many")]}
    )
    assert mixed.status_code == 202
    assert mixed.json()["accepted"] == 1
    assert mixed.json()["rejected"] == [{"index": 1, "field_errors": {"completion_tokens": "must be an integer"}}]

    all_bad = pipeline.api.post("/api/v1/usage/batch", json=[usage_record(cached_tokens=10**6)])
    assert all_bad.status_code == 422
    assert all_bad.json()["error"]["field_errors"] == {"records[0].cached_tokens": "must not exceed prompt_tokens"}

    not_json = pipeline.api.post("/api/v1/usage", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and "body" in not_json.json()["error"]["field_errors"]

    bad_query = pipeline.api.get("/api/v1/costs/aggregate", params={"group_by": "colour", "start_date": "yesterday"})
    assert bad_query.status_code == 422
    assert set(bad_query.json()["error"]["field_errors"]) == {"start_date", "group_by"}


def test_worker_serves_health_and_metrics(pipeline: Pipeline, usage_record: Callable[..., dict[str, Any]]) -> None:
    org = f"org-metrics-{uuid.uuid4().hex[:6]}"
    assert pipeline.api.post("/api/v1/usage", json=usage_record(organization_id=org)).status_code == 202
    _wait_for_requests(pipeline.api, org, 1)
    assert httpx.get(f"{pipeline.worker_url}/health").json() == {"status": "healthy"}
    metrics = httpx.get(f"{pipeline.worker_url}/metrics").text
    priced = [line for line in metrics.splitlines() if line.startswith('costops_events_priced_total{status="priced"}')]
    assert priced and float(priced[0].split()[-1]) >= 1


def test_system_endpoints(pipeline: Pipeline) -> None:
    assert pipeline.api.get("/health").json() == {"status": "healthy"}
    ready = pipeline.api.get("/ready").json()
    assert ready["checks"] == {"clickhouse": True, "kafka": True, "sink": True}
    metrics = pipeline.api.get("/metrics").text
    assert "costops_events_ingested_total" in metrics and "costops_sink_rows_written_total" in metrics
    paths = pipeline.api.get("/openapi.json").json()["paths"]
    assert {"/api/v1/usage", "/api/v1/usage/batch", "/api/v1/costs", "/api/v1/costs/aggregate",
            "/api/v1/costs/summary"} <= set(paths)  # fmt: skip
