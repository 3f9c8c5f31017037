"""The API's view of budget spend: the workers' ``budget-spend`` table, read from its changelog.

The workers hold each series' spend per period in a changelog-backed Faust table, in buckets
(streams/budget_step.py). Every API process reads that changelog from the start, outside any
consumer group, and keeps the latest value of each bucket, so ``GET /api/v1/budgets`` and the
ingestion's hard-limit check see the same numbers the threshold alerts were raised on, within
a second of the workers. Keys are JSON strings and values JSON lists (Faust's table codec); a
deleted key (a period no longer kept) is a tombstone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from aiokafka import AIOKafkaConsumer, TopicPartition

from llm_cost_ops.kafka import bootstrap_servers, follow_reconnecting, sleep_until
from llm_cost_ops.settings import Settings
from streams.budgets import Bucket, BucketKey, SpendKey

logger = logging.getLogger(__name__)

TABLE = "budget-spend"


def changelog_topic(settings: Settings) -> str:
    """Faust's name for the table's changelog (``<app id>-<table>-changelog``)."""
    return f"{settings.worker.app_id}-{TABLE}-changelog"


class SpendBoard:
    """Spend by (period, period start, series), summed over partitions; ``as_of`` is when the
    board last caught up with the changelog's end."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._buckets: dict[str, tuple[BucketKey, Bucket]] = {}
        self._totals: dict[SpendKey, Decimal] = {}
        self._positions: dict[TopicPartition, int] = {}
        """Where to resume after a reconnect: reading again from the start would replay old
        values over newer ones until it caught up."""
        self.as_of: datetime | None = None

    def spend(self, key: SpendKey) -> Decimal:
        return self._totals.get(key, Decimal(0))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record: a bucket, a tombstone, or another key of the table (ignored)."""
        try:
            text = json.loads(key or b"null")
            if not isinstance(text, str):
                return
            _, bucket_key = BucketKey.parse(text)
        except ValueError:
            return  # "<partition>|newest" and anything else that is not a bucket
        old = self._buckets.pop(text, None)
        if old is not None:
            self._add(*old, sign=-1)
        if value is None:
            return
        try:
            bucket = Bucket.load(json.loads(value))
        except (ValueError, TypeError, AssertionError, ArithmeticError) as exc:
            logger.error("ignored a budget spend record %s: %s", text, exc)
            return
        self._buckets[text] = (bucket_key, bucket)
        self._add(bucket_key, bucket, sign=1)

    def _add(self, bucket_key: BucketKey, bucket: Bucket, sign: int) -> None:
        for slot, spend in bucket.spends.items():
            key = bucket_key.key(slot)
            total = self._totals.get(key, Decimal(0)) + sign * spend.amount
            if total:
                self._totals[key] = total
            else:
                self._totals.pop(key, None)  # a period no longer kept (or nothing spent): reads as 0

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the changelog until ``stop``, reconnecting with backoff when the broker is away."""
        await follow_reconnecting(partial(self._follow, stop), "budget spend", stop)

    async def _follow(self, stop: asyncio.Event) -> None:
        topic = changelog_topic(self._settings)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self._settings), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = await _wait_for_topic(consumer, topic, self._settings.kafka.partitions, stop)
            if not partitions:
                return
            consumer.assign(partitions)
            for tp in partitions:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            while not stop.is_set():
                batch = await consumer.getmany(*partitions, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        self.apply(record.key, record.value)
                    if records:
                        self._positions[tp] = records[-1].offset + 1
                # Caught up when every partition is at the end the last fetch reported.
                ends = [consumer.highwater(tp) for tp in partitions]
                if all(
                    end is not None and self._positions.get(tp, 0) >= end
                    for tp, end in zip(partitions, ends, strict=True)
                ):
                    self.as_of = datetime.now(UTC)
        finally:
            await consumer.stop()


async def _wait_for_topic(
    consumer: AIOKafkaConsumer, topic: str, partitions: int, stop: asyncio.Event
) -> list[TopicPartition]:
    """The changelog's partitions (as many as the pipeline's topics), once a worker has created
    it: there is nothing to read before."""
    while not stop.is_set():
        if topic in await consumer.topics():
            return [TopicPartition(topic, number) for number in range(partitions)]
        await sleep_until(stop, 2.0)
    return []
