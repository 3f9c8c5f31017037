"""``cost-ops ingest-topic``: messages of another topic, mapped to usage events, validated and
published to the usage topic; what cannot be mapped or is invalid goes to the DLQ with why.

A plain aiokafka consumer, not a Faust agent: the ingester needs no table, its input is
someone else's JSON (not our codec), and the one guarantee that matters here, committing a
source offset only after the broker acknowledged everything made from it, is explicit in a
consumer loop and implicit (per-event acks) in Faust.

Each round (numbered steps, the order is the guarantee):

1. take up to ``ingest.batch_size`` messages;
2. map and validate each: events, and dead letters (the original key, bytes and headers,
   plus the DLQ headers of ``schemas.dlq``);
3. publish the events (keyed by organization) and the dead letters, and wait for the acks;
4. only then commit the offsets after the batch.

A crash between 3 and 4 re-reads the batch: at-least-once. The event ids are derived from the
source (trace and span ids, LiteLLM's request id, else topic-partition-offset), so the copy
has the same id and the pipeline counts it once. When 3 fails, the batch is read again from
its first offsets after a pause; nothing is committed past it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from llm_cost_ops.errors import NotFoundError
from llm_cost_ops.ingest.mapped import MappingError, MessageMapping, SourceRef
from llm_cost_ops.kafka import BrokerUnavailableError, bootstrap_servers, ensure_topics, sleep_until, start_producer
from llm_cost_ops.producer import PublishError, UsageProducer
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from schemas.dlq import DeadLetter
from schemas.errors import DecodeError, EventValidationError
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent

logger = logging.getLogger(__name__)

Record = Any
"""An aiokafka ``ConsumerRecord`` (aiokafka ships no type information)."""


@dataclass
class IngestStats:
    """Counts since the ingester started."""

    read: int = 0
    published: int = 0
    dead_lettered: int = 0


@dataclass
class _Round:
    events: list[UsageEvent]
    dead: list[tuple[Record, DeadLetter]]


class TopicIngester:
    """Maps one source topic into the usage topic (see the module docstring).

    Args:
        settings: brokers, the usage and DLQ topics, ``ingest.batch_size``.
        topic: the source topic.
        mapping: decoded JSON message -> usage records.
        group: the consumer group (its committed offsets are where a restart resumes).
        from_beginning: a group without committed offsets starts at the oldest message
            (else at new messages only).
    """

    def __init__(
        self, settings: Settings, topic: str, mapping: MessageMapping, group: str, from_beginning: bool = False
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._mapping = mapping
        self._group = group
        self._from_beginning = from_beginning
        self._providers = allowed_providers(settings.custom_providers)
        self.stats = IngestStats()

    async def run(self, stop: asyncio.Event) -> IngestStats:
        """Ingest until ``stop`` is set; the offsets of everything handled are committed."""
        await ensure_topics(self._settings)
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=bootstrap_servers(self._settings),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._from_beginning else "latest",
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise BrokerUnavailableError(f"cannot consume {self.topic}: {exc}") from exc
        try:
            if self.topic not in await consumer.topics():
                raise NotFoundError(f"topic {self.topic} does not exist")
            async with UsageProducer(self._settings, build_codec(self._settings)) as producer:
                dlq = await start_producer(self._settings)
                try:
                    await self._loop(consumer, producer, dlq, stop)
                finally:
                    await dlq.stop()
        finally:
            await consumer.stop()
        return self.stats

    async def _loop(
        self, consumer: AIOKafkaConsumer, producer: UsageProducer, dlq: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        pause = 0.5
        while not stop.is_set():
            batch: dict[TopicPartition, list[Record]] = await consumer.getmany(
                timeout_ms=500, max_records=self._settings.ingest.batch_size
            )
            messages = [message for records in batch.values() for message in records]
            if not messages:
                continue
            work = self.handle(messages)
            try:
                await producer.publish(work.events)
                await self._dead_letter(dlq, work.dead)
            except (PublishError, KafkaError, TimeoutError) as exc:
                # Step 3 failed: read the batch again, later; nothing past it is committed.
                logger.error(
                    "publish failed, retrying the batch in %.1fs: %s",
                    pause,
                    exc,
                    extra={"operation": "ingest_topic", "topic": self.topic, "rows": len(messages)},
                )
                for tp, records in batch.items():
                    consumer.seek(tp, records[0].offset)
                await sleep_until(stop, pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = 0.5
            self.stats.read += len(messages)
            self.stats.published += len(work.events)
            self.stats.dead_lettered += len(work.dead)
            try:
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
            except CommitFailedError as exc:
                # A rebalance took the partitions: their new owner re-reads the batch, and the
                # copies carry the same event ids.
                logger.warning("commit failed after a rebalance: %s", exc, extra={"topic": self.topic})
            logger.info(
                "ingested",
                extra={"operation": "ingest_topic", "topic": self.topic, "rows": len(work.events),
                       "dead": len(work.dead)},
            )  # fmt: skip

    def handle(self, messages: list[Record]) -> _Round:
        """Steps 1-2: each message's events and dead letters (no I/O)."""
        work = _Round([], [])
        for message in messages:
            source = SourceRef(message.topic, message.partition, message.offset)
            try:
                decoded = json.loads(message.value) if message.value is not None else None
            except (ValueError, UnicodeDecodeError) as exc:
                work.dead.append((message, DeadLetter.from_error(DecodeError(f"not valid JSON: {exc}"))))
                continue
            if decoded is None:
                work.dead.append((message, DeadLetter.from_error(DecodeError("empty message (null or no value)"))))
                continue
            mapped = self._mapping(decoded, source)
            if not mapped:
                work.dead.append((message, DeadLetter.from_error(MappingError("no usage record in the message"))))
                continue
            many = len(mapped) > 1
            for index, record in enumerate(mapped):
                where = index if many else None
                if isinstance(record, MappingError):
                    work.dead.append((message, DeadLetter.from_error(record, where)))
                    continue
                try:
                    work.events.append(UsageEvent.parse(record, self._providers))
                except EventValidationError as exc:
                    work.dead.append((message, DeadLetter.from_error(exc, where)))
        return work

    async def _dead_letter(self, dlq: AIOKafkaProducer, dead: list[tuple[Record, DeadLetter]]) -> None:
        futures = []
        for message, letter in dead:
            logger.warning(
                "dead letter: %s",
                letter.reason,
                extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
            )
            original = [(key, bytes(value)) for key, value in message.headers or ()]
            headers = letter.headers(message.topic, message.partition, message.offset, original)
            futures.append(
                await dlq.send(self._settings.kafka.dlq_topic, value=message.value, key=message.key, headers=headers)
            )
        await asyncio.wait_for(asyncio.gather(*futures), timeout=30.0)


async def run_until_signalled(ingester: TopicIngester) -> IngestStats:
    """Run until SIGINT or SIGTERM, then stop cleanly (offsets of handled messages committed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await ingester.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
