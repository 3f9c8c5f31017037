"""The sink on a real broker and a real ClickHouse engine: batches with duplicates and garbage,
commits, and faults (inserts that fail, a restart while failing, a crash between the write and
the offset commit). Every event lands exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llm_cost_ops.kafka import ensure_topics
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.columns import millis, table_from_events
from schemas.priced import encode_priced
from schemas.query import CostFilterParams
from schemas.usage import UsageEvent
from sinks.queries import CostQueries
from sinks.sink import UsageSink
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog


class CrashAfterWrite(UsageSink):
    """Dies after its first successful insert, before committing: the window a real crash hits."""

    async def _commit(self, consumer: object, offsets: dict[TopicPartition, int]) -> None:
        raise RuntimeError("crash between the write and the commit")


async def publish(settings: Settings, priced: pa.Table, raw: Sequence[bytes] = (), per_message: int = 20) -> None:
    """Publish a priced table as messages of ``per_message`` events (and raw byte strings)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    for start in range(0, priced.num_rows, per_message):
        part = priced.slice(start, per_message)
        key = str(part.column("organization_id")[0]).encode()
        await producer.send(settings.kafka.priced_topic, encode_priced(part), key=key)
    for value in raw:
        await producer.send(settings.kafka.priced_topic, value, key=b"raw")
    await producer.flush()
    await producer.stop()


async def run_until(sink: UsageSink, predicate: Callable[[], bool], timeout_s: float = 60) -> BaseException | None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    deadline = time.monotonic() + timeout_s
    while not predicate() and not task.done():
        if time.monotonic() > deadline:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            pytest.fail("the sink did not reach the expected state in time")
        await asyncio.sleep(0.05)
    stop.set()
    (result,) = await asyncio.gather(task, return_exceptions=True)
    return result if isinstance(result, BaseException) else None


def priced_events(factory: Callable[..., UsageEvent], org: str, n: int) -> pa.Table:
    events = [factory(organization_id=org) for _ in range(n)]
    return PriceCatalog().price(table_from_events(events), millis(datetime.now(UTC)))


def total(*priced: pa.Table) -> Decimal:
    return sum((c for t in priced for c in t.column("total_cost").to_pylist() if c is not None), Decimal(0))


def test_failed_inserts_then_restart_land_every_event_once(
    kafka_settings: Callable[..., Settings], store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    settings = kafka_settings()
    first = priced_events(usage_event, "org-fault", 200)
    second = priced_events(usage_event, "org-fault", 100)
    table, away = store.table("usage_costs"), store.table("usage_costs_away")
    count = lambda: CostQueries(store).summary(CostFilterParams(organization_id="org-fault")).total_requests  # noqa: E731

    async def scenario() -> None:
        await ensure_topics(settings)
        await publish(settings, first)
        store.query(f"RENAME TABLE {table} TO {away}")  # every insert now fails
        metrics = PipelineMetrics()
        failing = UsageSink(settings, store, metrics)
        assert (
            await run_until(
                failing, lambda: (metrics.registry.get_sample_value("costops_sink_flush_failures_total") or 0) >= 3
            )
            is None
        )
        assert not failing.healthy and failing.rows_written == 0
        store.query(f"RENAME TABLE {away} TO {table}")  # ClickHouse is back
        # The producer retried some events too: 50 of the first batch arrive again.
        await publish(settings, pa.concat_tables([second, first.slice(0, 50)]))
        restarted = UsageSink(settings, store, PipelineMetrics())
        assert await run_until(restarted, lambda: count() >= 300) is None
        assert restarted.healthy

    asyncio.run(scenario())
    time.sleep(0.5)
    summary = CostQueries(store).summary(CostFilterParams(organization_id="org-fault"))
    assert summary.total_requests == 300
    assert summary.total_cost == total(first, second)


def test_crash_between_write_and_commit_replays_without_double_counting(
    kafka_settings: Callable[..., Settings], store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    settings = kafka_settings()
    priced = priced_events(usage_event, "org-crash", 150)

    async def scenario() -> None:
        await ensure_topics(settings)
        await publish(settings, priced)
        crashing = CrashAfterWrite(settings, store, PipelineMetrics())
        error = await run_until(crashing, lambda: False)
        assert isinstance(error, RuntimeError) and crashing.rows_written > 0
        # Nothing was committed: the next sink replays what the first one had already written.
        replay = UsageSink(settings, store, PipelineMetrics())
        assert await run_until(replay, lambda: replay.rows_written >= 150) is None

    asyncio.run(scenario())
    raw = store.query(f"SELECT count() FROM {store.table('usage_costs')} WHERE organization_id = 'org-crash'")[0][0]
    summary = CostQueries(store).summary(CostFilterParams(organization_id="org-crash"))
    assert raw >= 150  # copies on disk until a merge ...
    assert summary.total_requests == 150  # ... counted once
    assert summary.total_cost == total(priced)


def test_sink_writes_each_event_once_and_dead_letters_garbage(
    kafka_settings: Callable[..., Settings], store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    settings = kafka_settings()
    priced = priced_events(usage_event, "org-sink", 300)
    garbage = b"\x00\x00\x00\x00\x02garbage"

    async def scenario() -> list[tuple[bytes, dict[str, bytes]]]:
        await ensure_topics(settings)
        # Every record twice (a replayed batch), and one record no decoder can read.
        await publish(settings, pa.concat_tables([priced, priced.slice(0, 100)]), raw=[garbage])
        sink = UsageSink(settings, store, PipelineMetrics())
        assert await run_until(sink, lambda: sink.rows_written >= 300) is None
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
    assert summary.total_cost == total(priced)
    assert len(dead) == 1
    value, headers = dead[0]
    assert value == garbage
    assert headers["x-dlq-kind"] == b"SINK_DECODE_ERROR"
    assert b"not an Arrow IPC stream" in headers["x-dlq-reason"]


def test_sink_commits_only_what_it_wrote(
    kafka_settings: Callable[..., Settings], store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    """A second sink in the same group starts after the first one's last commit: nothing is
    written twice and nothing is skipped."""
    settings = kafka_settings()
    first = priced_events(usage_event, "org-commit", 50)
    second = priced_events(usage_event, "org-commit", 70)

    async def scenario() -> tuple[int, int]:
        await ensure_topics(settings)
        await publish(settings, first)
        sink1 = UsageSink(settings, store, PipelineMetrics())
        assert await run_until(sink1, lambda: sink1.rows_written >= 50) is None
        await publish(settings, second)
        sink2 = UsageSink(settings, store, PipelineMetrics())
        assert await run_until(sink2, lambda: sink2.rows_written >= 70) is None
        return sink1.rows_written, sink2.rows_written

    assert asyncio.run(scenario()) == (50, 70)
    assert CostQueries(store).summary(CostFilterParams(organization_id="org-commit")).total_requests == 120
