"""``cost-ops ingest-topic`` on the real broker: LiteLLM rows and OpenTelemetry spans on a
topic of their own become usage events (decoded with the pipeline's codec), what cannot be
mapped or is invalid goes to the DLQ with why, and a restart neither loses nor duplicates."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from llm_cost_ops.ingest.litellm import LiteLlmMapping
from llm_cost_ops.ingest.mapped import MessageMapping
from llm_cost_ops.ingest.otel import OtelGenAiMapping
from llm_cost_ops.ingest.topic import IngestStats, TopicIngester
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from schemas import dlq

pytestmark = pytest.mark.integration


def row(n: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "request_id": f"req-{n}",
        "model": "gpt-4o",
        "custom_llm_provider": "openai",
        "prompt_tokens": 100 + n,
        "completion_tokens": 10,
        "startTime": "2025-01-15T10:00:00",
        "endTime": "2025-01-15T10:00:01",
        "team_id": f"team-{n % 3}",
        "user": "alice",
        "metadata": {},
    }
    base.update(overrides)
    return base


async def create_topic(settings: Settings, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for n, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=f"k{n}".encode(), headers=[("origin", b"test")])
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, at_least: int, quiet_s: float = 3.0) -> list[Any]:
    """Every message of ``topic`` (outside any group): until ``at_least`` are read and nothing
    more came for ``quiet_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = [m for records in batch.values() for m in records]
            messages.extend(got)
            if got:
                last = time.monotonic()
            elif len(messages) >= at_least and time.monotonic() - last > quiet_s:
                break
        return messages
    finally:
        await consumer.stop()


async def run_ingester(
    settings: Settings, topic: str, mapping: MessageMapping, group: str, until: Callable[[IngestStats], bool]
) -> IngestStats:
    """An ingester until ``until(stats)`` holds (and at least 3 s, so anything extra would be read)."""
    ingester = TopicIngester(settings, topic, mapping, group, from_beginning=True)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    started = time.monotonic()
    while not (until(ingester.stats) and time.monotonic() - started > 3):
        assert time.monotonic() - started < 90, f"ingester stuck at {ingester.stats}"
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.2)
    stop.set()
    return await asyncio.wait_for(task, 30)


def usage_ids(settings: Settings, messages: list[Any]) -> list[str]:
    codec = build_codec(settings)
    ids: list[str] = []
    for message in messages:
        ids.extend(codec.decode_usage(message.value).column("event_id").to_pylist())
    return ids


def header(message: Any, name: str) -> str | None:
    return next((bytes(v).decode() for k, v in message.headers if k == name), None)


def test_litellm_topic_ingested_dead_lettered_and_resumed(kafka_settings: Callable[..., Settings]) -> None:
    settings = kafka_settings()
    source = f"litellm-spend-{uuid.uuid4().hex[:8]}"
    group = f"ingest-{uuid.uuid4().hex[:8]}"
    mapping = LiteLlmMapping(settings.ingest)
    good = [row(n) for n in range(8)]
    bad = [b'{"request_id": "req-x", "model": ', json.dumps(row(100, custom_llm_provider="nope")).encode(),
           json.dumps(row(101, team_id=None)).encode(), b"null"]  # fmt: skip
    values = [json.dumps(r).encode() for r in good[:4]] + bad + [json.dumps(r).encode() for r in good[4:]]

    async def scenario() -> None:
        await create_topic(settings, source, 2)
        await produce(settings, source, values)
        stats = await run_ingester(settings, source, mapping, group, lambda s: s.read >= len(values))
        assert (stats.read, stats.published, stats.dead_lettered) == (12, 8, 4)

        published = await read_all(settings, settings.kafka.usage_topic, 1)
        ids = usage_ids(settings, published)
        assert len(ids) == 8 and len(set(ids)) == 8
        assert all(m.key.decode().startswith("team-") for m in published)  # keyed by organization

        dead = await read_all(settings, settings.kafka.dlq_topic, 4)
        assert len(dead) == 4
        kinds = sorted(header(m, dlq.KIND) or "" for m in dead)
        assert kinds == ["DECODE_ERROR", "DECODE_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR"]
        reasons = " | ".join(header(m, dlq.FIELD_ERRORS) or header(m, dlq.REASON) or "" for m in dead)
        assert "provider: must be one of" in reasons and "organization_id: is required" in reasons
        assert all(header(m, dlq.SOURCE_TOPIC) == source and header(m, "origin") == "test" for m in dead)
        assert {bytes(m.value) for m in dead} == set(bad)  # the original bytes, for a replay

        # A restart resumes after the committed offsets: nothing is published twice.
        stats = await run_ingester(settings, source, mapping, group, lambda s: True)
        assert stats.read == 0
        await produce(settings, source, [json.dumps(row(50)).encode()])
        stats = await run_ingester(settings, source, mapping, group, lambda s: s.read >= 1)
        assert (stats.read, stats.published) == (1, 1)
        after = usage_ids(settings, await read_all(settings, settings.kafka.usage_topic, 9))
        assert len(after) == 9

        # A re-read from the start (a crash before the commit, or another group) makes the same
        # event ids, which the pipeline counts once.
        other = await run_ingester(settings, source, mapping, f"{group}-again", lambda s: s.read >= 13)
        assert other.published == 9
        again = usage_ids(settings, await read_all(settings, settings.kafka.usage_topic, 18))
        assert len(again) == 18 and set(again) == set(after)

    asyncio.run(scenario())


def test_otlp_spans_topic_ingested(kafka_settings: Callable[..., Settings]) -> None:
    settings = kafka_settings()
    source = f"otlp-spans-{uuid.uuid4().hex[:8]}"

    def span(n: int, **attrs: Any) -> dict[str, Any]:
        values = {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022",
                  "gen_ai.usage.input_tokens": 10 + n, "gen_ai.usage.output_tokens": 5, **attrs}  # fmt: skip
        return {
            "traceId": f"{n:032x}", "spanId": f"{n:016x}", "name": "chat",
            "startTimeUnixNano": "1736935200000000000", "endTimeUnixNano": "1736935200500000000",
            "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                           for k, v in values.items()],
        }  # fmt: skip

    export = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "tenant.id", "value": {"stringValue": "org-otel"}}]},
                "scopeSpans": [{"spans": [span(1), span(2), span(3, **{"gen_ai.usage.output_tokens": -1})]}],
            }
        ]
    }
    no_genai = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "GET /", "attributes": []}]}]}]}

    async def scenario() -> None:
        await create_topic(settings, source, 1)
        await produce(settings, source, [json.dumps(export).encode(), json.dumps(no_genai).encode()])
        mapping = OtelGenAiMapping(settings.ingest)
        stats = await run_ingester(settings, source, mapping, f"g-{uuid.uuid4().hex[:6]}", lambda s: s.read >= 2)
        assert (stats.published, stats.dead_lettered) == (2, 2)
        published = await read_all(settings, settings.kafka.usage_topic, 1)
        table = build_codec(settings).decode_usage(published[0].value)
        assert table.column("prompt_tokens").to_pylist() == [11, 12]
        assert table.column("latency_ms").to_pylist() == [500, 500]
        dead = await read_all(settings, settings.kafka.dlq_topic, 2)
        by_kind = {header(m, dlq.KIND): m for m in dead}
        assert header(by_kind["VALIDATION_ERROR"], dlq.BATCH_INDEX) == "2"
        assert header(by_kind["MAPPING_ERROR"], dlq.REASON) == "no usage record in the message"

    asyncio.run(scenario())
