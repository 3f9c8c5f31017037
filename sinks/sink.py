"""The sink: ``priced-usage`` -> ClickHouse ``usage_costs`` (and ``cost-windows`` ->
``cost_windows``, ``alerts`` -> ``alerts``), batched and idempotent.

Each cycle:

1. collect records until ``batch_size`` rows or ``flush_seconds`` have passed;
2. decode them (an undecodable message goes to the DLQ with its reason, never dropped);
3. dedupe the batch by (organization_id, event_id);
4. insert, retrying with exponential backoff for as long as ClickHouse fails, whatever the
   error (an outage, or a table a bad migration broke): consumption pauses meanwhile, so memory
   stays bounded by one batch, nothing is dropped, and ``healthy`` (hence ``/ready``) is false;
   then mark the batch's (organization, hour) pairs dirty for the hourly rollup (:mod:`sinks.rollup`);
5. only then commit the offsets of the batch.

A crash between 4 and 5 replays the batch; the replayed rows collapse with the written ones
(ReplacingMergeTree keyed by event id, read with FINAL), so every event counts once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from llm_cost_ops.consumer_lag import partition_lags
from llm_cost_ops.kafka import bootstrap_servers, producer_config
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.columns import compact
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError
from schemas.priced import decode_priced
from sinks.errors import QueryError, StoreUnavailableError
from sinks.records import ALERT_SCHEMA, WINDOW_SCHEMA, parse_record, records_table
from sinks.rollup import marks_of
from sinks.rows import dedupe
from sinks.store import ClickHouseStore

logger = logging.getLogger(__name__)


@dataclass
class SinkBatch:
    """Rows and dead letters of one cycle, with the offsets to commit once they are durable."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"cost_windows": [], "alerts": []})
    """Closed windows and alerts (JSON records), by table."""
    dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rows + sum(len(r) for r in self.records.values()) + len(self.dead)


RECORD_SCHEMAS = {"cost_windows": WINDOW_SCHEMA, "alerts": ALERT_SCHEMA}


class UsageSink:
    """Consumes ``priced-usage`` into ``usage_costs``.

    Args:
        settings: brokers, topics, group, batch and retry settings.
        store: the ClickHouse store to write to.
        metrics: counters of rows written, duplicates and failures.
    """

    def __init__(self, settings: Settings, store: ClickHouseStore, metrics: PipelineMetrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        kafka = settings.kafka
        self._tables_of = {kafka.windows_topic: "cost_windows", kafka.alerts_topic: "alerts"}
        self.rows_written = 0
        self._committed: dict[TopicPartition, int] = {}
        """Offsets this sink committed, for the consumer lag (no request to the broker)."""
        self.ready = asyncio.Event()
        self.healthy = True
        """False while inserts fail; the API's /ready reports it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Offsets of an unwritten batch are never committed."""
        s = self._settings
        consumer = AIOKafkaConsumer(
            s.kafka.priced_topic,
            s.kafka.windows_topic,
            s.kafka.alerts_topic,
            bootstrap_servers=bootstrap_servers(s),
            group_id=s.sink.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.sink.batch_size,
            rebalance_timeout_ms=int(s.kafka.rebalance_timeout_s * 1000),
        )
        dlq = AIOKafkaProducer(**producer_config(s))
        await consumer.start()
        await dlq.start()
        self.ready.set()
        try:
            while not stop.is_set():
                batch = await self._collect(consumer, stop)
                self._record_lag(consumer)
                if not batch:
                    continue
                if not await self._write(batch, stop):
                    return  # stopped while ClickHouse was down: the batch stays uncommitted
                await self._dead_letter(dlq, batch.dead)
                await self._commit(consumer, batch.offsets)
        finally:
            await consumer.stop()
            await dlq.stop()

    async def _collect(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> SinkBatch:
        s = self._settings.sink
        batch = SinkBatch()
        deadline = time.monotonic() + s.flush_seconds
        while len(batch) < s.batch_size and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # At most 200 messages a fetch: a message may be a batch of many events, and the
            # rows held in memory must stay bounded.
            fetched = await consumer.getmany(
                timeout_ms=int(remaining * 1000), max_records=max(1, min(s.batch_size - len(batch), 200))
            )
            for tp, records in fetched.items():
                self._metrics.messages_consumed.labels("sink", tp.topic).inc(len(records))
                for record in records:
                    self._add(batch, record)
                batch.offsets[tp] = records[-1].offset + 1
        return batch

    def _add(self, batch: SinkBatch, record: ConsumerRecord[bytes, bytes]) -> None:
        table_name = self._tables_of.get(record.topic)
        if table_name is not None:
            try:
                batch.records[table_name].append(parse_record(record.value, RECORD_SCHEMAS[table_name]))
            except DecodeError as exc:
                batch.dead.append((record, f"{table_name} record unusable by the sink: {exc.message}"))
            return
        try:
            table = decode_priced(record.value)
        except DecodeError as exc:
            batch.dead.append((record, f"priced message unusable by the sink: {exc.message}"))
            return
        batch.tables.append(table)
        batch.rows += table.num_rows

    async def _write(self, batch: SinkBatch, stop: asyncio.Event) -> bool:
        """Insert every table of the batch; False if stopped while ClickHouse failed."""
        writes: list[tuple[str, pa.Table]] = []
        if batch.rows:
            # One chunk, dictionaries unified: what one Arrow stream to ClickHouse can carry.
            table, duplicates = dedupe(compact(pa.concat_tables(batch.tables).combine_chunks()))
            self._metrics.sink_duplicates.inc(duplicates)
            writes.append(("usage_costs", table))
            # After the rows, before the offsets: the hourly rollup recomputes these hours.
            writes.append(("rollup_marks", marks_of(table)))
        for name, records in batch.records.items():
            if records:
                writes.append((name, records_table(records, RECORD_SCHEMAS[name])))
        for name, table in writes:
            if not await self._insert(name, table, stop):
                return False
        return True

    async def _insert(self, name: str, table: pa.Table, stop: asyncio.Event) -> bool:
        rows = table.num_rows
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                # Rows arrive deduplicated, so the engine's own in-block merge is pure cost.
                await asyncio.to_thread(self._store.insert_arrow, name, table, {"optimize_on_insert": 0})
            except (StoreUnavailableError, QueryError) as exc:
                self.healthy = False
                self._metrics.sink_failures.inc()
                logger.error(
                    "insert failed, retrying in %.1fs: %s", delay, exc,
                    extra={"operation": "flush", "rows": rows},
                )  # fmt: skip
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    return False
                except TimeoutError:
                    delay = min(delay * 2, self._settings.sink.retry_max_seconds)
                    continue
            self.healthy = True
            self._metrics.sink_flush_seconds.observe(time.perf_counter() - started)
            self._metrics.sink_batch_rows.labels(name).observe(rows)
            self._metrics.sink_rows.labels(name).inc(rows)
            if name == "usage_costs":
                self.rows_written += rows
            logger.debug("flushed", extra={"operation": "flush", "rows": rows})
            return True

    async def _dead_letter(
        self, dlq: AIOKafkaProducer, dead: Sequence[tuple[ConsumerRecord[bytes, bytes], str]]
    ) -> None:
        for record, reason in dead:
            self._metrics.events_dead_lettered.labels("SINK_DECODE_ERROR").inc()
            logger.error("dead letter from the sink: %s", reason, extra={"offset": record.offset})
            letter = DeadLetter(kind="SINK_DECODE_ERROR", reason=reason, field_errors={})
            await dlq.send_and_wait(
                self._settings.kafka.dlq_topic,
                value=record.value,
                key=record.key,
                headers=letter.headers(record.topic, record.partition, record.offset, list(record.headers)),
            )

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The rows are already durable; after the rebalance the new owner replays them and
            # the table collapses the copies. Losing the commit costs work, not accuracy.
            logger.warning("offset commit failed after a successful write: %s", exc)

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """``costops_consumer_lag`` of the partitions held now, each cycle (the high watermarks
        come with every fetch). Partitions this sink has not committed yet are left out."""
        assigned = consumer.assignment()
        for tp in set(self._committed) - assigned:
            del self._committed[tp]  # revoked: its next owner reports it
        lags = partition_lags(assigned, consumer.highwater, self._committed.get)
        self._metrics.set_consumer_lag(self._settings.sink.group_id, lags)
