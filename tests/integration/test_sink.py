"""The sink on a real broker and a real ClickHouse engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llm_cost_ops.kafka import ensure_topics
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from schemas.query import CostFilterParams
from schemas.usage import UsageEvent
from sinks.queries import CostQueries
from sinks.sink import UsageSink
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog, price_event


async def _run_sink_until(sink: UsageSink, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.1)
    stop.set()
    await task


def test_sink_writes_each_event_once_and_dead_letters_garbage(
    kafka_settings: Callable[..., Settings],
    store: ClickHouseStore,
    usage_event: Callable[..., UsageEvent],
) -> None:
    settings = kafka_settings()
    codec = build_codec(settings)
    catalog = PriceCatalog()
    events = [usage_event(organization_id="org-sink") for _ in range(300)]
    priced = [price_event(e, catalog, datetime.now(UTC)) for e in events]
    expected = sum((p.cost.total_cost for p in priced if p.cost), Decimal(0))

    async def scenario() -> list[tuple[bytes, dict[str, bytes]]]:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        await producer.start()
        # Every record twice (a replayed batch), and one record no decoder can read.
        for p in priced + priced[:100]:
            await producer.send(settings.kafka.priced_topic, codec.encode_priced(p), key=b"org-sink")
        await producer.send_and_wait(settings.kafka.priced_topic, b"\x00\x00\x00\x00\x02garbage", key=b"org-sink")
        await producer.stop()
        sink = UsageSink(settings, store, codec.serde, PipelineMetrics())
        await _run_sink_until(sink, lambda: sink.rows_written >= 300)
        consumer = AIOKafkaConsumer(
            settings.kafka.dlq_topic, bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest", group_id="dlq-reader",
        )  # fmt: skip
        await consumer.start()
        batches = await consumer.getmany(timeout_ms=5000)
        await consumer.stop()
        return [(m.value, dict(m.headers)) for ms in batches.values() for m in ms]  # type: ignore[misc]

    dead = asyncio.run(scenario())
    summary = CostQueries(store).summary(CostFilterParams(organization_id="org-sink"))
    assert summary.total_requests == 300
    assert summary.total_cost == expected
    assert len(dead) == 1
    value, headers = dead[0]
    assert value == b"\x00\x00\x00\x00\x02garbage"
    assert headers["x-dlq-kind"] == b"SINK_DECODE_ERROR"
    assert b"Avro body" in headers["x-dlq-reason"]


def test_sink_commits_only_what_it_wrote(
    kafka_settings: Callable[..., Settings],
    store: ClickHouseStore,
    usage_event: Callable[..., UsageEvent],
) -> None:
    """A second sink in the same group starts after the first one's last commit: nothing is
    written twice and nothing is skipped."""
    settings = kafka_settings()
    codec = build_codec(settings)
    catalog = PriceCatalog()
    first = [price_event(usage_event(organization_id="org-commit"), catalog, datetime.now(UTC)) for _ in range(50)]
    second = [price_event(usage_event(organization_id="org-commit"), catalog, datetime.now(UTC)) for _ in range(70)]

    async def publish(batch: list) -> None:  # type: ignore[type-arg]
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        await producer.start()
        for p in batch:
            await producer.send(settings.kafka.priced_topic, codec.encode_priced(p), key=b"org-commit")
        await producer.flush()
        await producer.stop()

    async def scenario() -> tuple[int, int]:
        await ensure_topics(settings)
        await publish(first)
        sink1 = UsageSink(settings, store, codec.serde, PipelineMetrics())
        await _run_sink_until(sink1, lambda: sink1.rows_written >= 50)
        await publish(second)
        sink2 = UsageSink(settings, store, codec.serde, PipelineMetrics())
        await _run_sink_until(sink2, lambda: sink2.rows_written >= 70)
        return sink1.rows_written, sink2.rows_written

    written = asyncio.run(scenario())
    assert written == (50, 70)
    assert CostQueries(store).summary(CostFilterParams(organization_id="org-commit")).total_requests == 120
